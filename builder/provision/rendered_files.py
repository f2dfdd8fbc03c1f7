"""Put the rendered plan into the image: root files by name-resolved owner, removals, boot edits."""

from __future__ import annotations

import stat
from collections.abc import Sequence

from builder.image import OpenImage
from builder.image.image_root import ImageRoot
from builder.render import ImageFile, RenderPlan, apply_cmdline, apply_config_txt


def write_files(img: ImageRoot, files: Sequence[ImageFile]) -> None:
    """Directories and files in path order, so a directory's mode is set before its contents land."""
    for f in files:
        if f.directory:
            img.make_dir(f.path, mode=f.mode, owner=f.owner, group=f.group)
        else:
            img.write_file(f.path, f.data, mode=f.mode, owner=f.owner, group=f.group)


def remove_paths(img: ImageRoot, patterns: Sequence[str]) -> None:
    """Delete files matching absolute globs (only the last component may hold wildcards)."""
    for pattern in patterns:
        for path, info in img.glob(pattern):
            if not stat.S_ISDIR(info.st_mode):
                img.remove(path)


def apply_boot_edits(img: OpenImage, plan: RenderPlan) -> None:
    """config.txt lines into [all] (and board lines under [pi4]/[pi5]), the serial console out of cmdline.txt,
    extra boot files."""
    boot = img.boot
    config = boot.read("config.txt").decode()
    boot.write("config.txt", apply_config_txt(config, plan.config_txt_lines, plan.config_txt_boards).encode())
    cmdline = boot.read("cmdline.txt").decode()
    boot.write("cmdline.txt", apply_cmdline(cmdline, remove_serial_console=plan.remove_serial_console,
                                            add=plan.cmdline_args).encode())
    for name, data in plan.boot_files:
        boot.write(name, data)

"""Reading the files the builder is given: regular, bounded in size, UTF-8, YAML bounded in depth and aliases.

A FIFO, a device (`--cluster /dev/zero`), a socket or a directory is refused by its kind before it
is opened (opening some devices has effects, and reading a FIFO or /dev/zero never ends); a file
is read up to its size limit only. YAML is parsed with the safe loader, plus three bounds: nesting
depth, the number of values the aliases expand to (an alias bomb is a few lines), and duplicate keys
(YAML would keep the last one silently). Every problem is one InputError naming the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.nodes

from builder.errors import InputError

YAML_LIMIT = 256 << 10      # a cluster file, a profile or a manifest is a few KiB
TEMPLATE_LIMIT = 1 << 20
FILE_LIMIT = 16 << 20       # a file an overlay copies into the image as it is
MAX_DEPTH = 32
MAX_VALUES = 100_000        # the values of a document with every alias expanded (1,024 nodes take ~20,000)

# YAML refuses most of these itself, but with an error that is no YAMLError with a position.
_YAML_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path, label: str, limit: int, *, hint: str | None = None, nofollow: bool = False) -> bytes:
    """The whole of a regular file of at most `limit` bytes; anything else is one InputError.
    `nofollow`: the path is already resolved (see `inside`), and a link put there since is refused."""
    try:
        info = os.lstat(path) if nofollow else os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{label}: is {kind_of(info.st_mode)}, not a regular file",
                             hint="point at a regular file")
        if info.st_size > limit:
            raise InputError(f"{label}: is {info.st_size} bytes; at most {limit} are read",
                             hint="is this the right file?")
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it does not wait.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file", hint=hint) from None
    except RuntimeError:
        raise InputError(f"{label}: is a symlink loop", hint="fix or remove the link") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read: {exc.strerror}", hint=hint) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InputError(f"{label}: is not a regular file", hint="point at a regular file")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:      # e.g. /proc/self/mem: a "regular file" that cannot be read from 0
            raise InputError(f"{label}: cannot read: {exc.strerror}", hint=hint or "point at a regular file") from None
    if len(data) > limit:
        raise InputError(f"{label}: is larger than {limit} bytes", hint="is this the right file?")
    return data


def inside(root: Path, path: Path, label: str) -> Path:
    """`path` with every link resolved, refused unless it stays inside `root` (itself resolved).

    Profiles and overlays come from folders someone else may have written: a link in them to
    /etc/passwd or ~/.ssh must not carry that file into an image, however it is reached (an
    overlay walked, a template included or imported, a profile or manifest read).
    """
    try:
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        raise InputError(f"{label}: no such file (or a link to nothing)", hint="fix or remove the link") from None
    except RuntimeError:
        raise InputError(f"{label}: is a symlink loop", hint="fix or remove the link") from None
    except OSError as exc:
        problem = "is a symlink loop" if exc.errno == errno.ELOOP else f"cannot be resolved: {exc.strerror}"
        raise InputError(f"{label}: {problem}", hint="fix or remove the link") from None
    if not str(real).startswith(str(root).rstrip("/") + "/"):
        raise InputError(f"{label}: leads outside {root.name}/ (to {shown_path(real)}); nothing outside it is read",
                         hint=f"copy the file into {root.name}/ instead of linking to it")
    return real


def shown_path(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 60 and text.isprintable() else repr(text[:57]) + "..."


def decode_text(data: bytes, label: str) -> str:
    """UTF-8 (a UTF-8 byte order mark is allowed); the error names the line and byte of the first bad byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{label}: is UTF-16 text", hint="save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{label}: line {line} (byte {exc.start}): byte 0x{data[exc.start]:02x} is not UTF-8",
                         hint="save the file as UTF-8") from None


def read_text(path: Path, label: str, limit: int = TEMPLATE_LIMIT, *, hint: str | None = None,
              nofollow: bool = False) -> str:
    return decode_text(read_bytes(path, label, limit, hint=hint, nofollow=nofollow), label)


def read_yaml_file(path: Path, label: str, *, hint: str | None = None, nofollow: bool = False) -> object:
    """Parse one YAML document from a regular, small, UTF-8 file, within the bounds above."""
    text = read_text(path, label, YAML_LIMIT, hint=hint, nofollow=nofollow)
    bad = _YAML_CONTROL_RE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise InputError(f"{label}: line {line}: the control character {bad.group()!r} is not allowed",
                         hint="remove it; write \\n or \\t inside double quotes if it was meant")
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise InputError(f"{label}: {where}: YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{label}: YAML error: {' '.join(str(exc).split())[:200]}") from None
    except (ValueError, RecursionError) as exc:   # e.g. an integer of thousands of digits
        raise InputError(f"{label}: a value YAML cannot convert: {str(exc)[:120]}",
                         hint="write long numbers in quotes") from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader, refusing deep nesting, alias bombs, self-referring aliases and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _count_values(node, {}, set())
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.nodes.MappingNode):
            seen: set[str] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.nodes.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"the key {key_node.value[:40]!r} is given twice", key_node.start_mark)
                    seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _count_values(node: Any, counted: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for with every alias expanded; stops at MAX_VALUES."""
    key = id(node)
    if key in counted:
        return counted[key]
    if key in open_nodes:
        raise yaml.composer.ComposerError(None, None, "an alias refers to a value containing itself",
                                          node.start_mark)
    total = 1
    if isinstance(node, yaml.nodes.CollectionNode):
        open_nodes.add(key)
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.nodes.MappingNode) \
            else list(node.value)
        for child in children:
            total += _count_values(child, counted, open_nodes)
            if total > MAX_VALUES:
                raise yaml.composer.ComposerError(
                    None, None, f"the document holds more than {MAX_VALUES} values (each alias counted as "
                                "what it stands for)", node.start_mark)
        open_nodes.discard(key)
    counted[key] = total
    return total

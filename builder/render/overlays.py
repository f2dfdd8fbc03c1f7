"""Overlays: `overlays/<name>/<path>` becomes `/<path>` in the image; `*.j2` files are Jinja templates.

File and directory names may hold Jinja too (`{{ network.interface }}.nmconnection.j2`); each
name must render to a single path component. `overlays/<name>/manifest.yaml` (optional, never
copied) gives owners and modes and repeats subtrees; the format is in overlays/README.md.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from builder.config.grammar import control_problem, shown
from builder.config.reader import Reader
from builder.errors import InputError
from builder.input_files import (
    FILE_LIMIT,
    TEMPLATE_LIMIT,
    inside,
    kind_of,
    read_bytes,
    read_text,
    read_yaml_file,
)
from builder.render.error_labels import labelled
from builder.render.image_file import ImageFile
from builder.render.limits import RenderTimeout
from builder.render.sandbox import evaluate, problem, render, sandbox

MANIFEST = "manifest.yaml"
TEMPLATE_SUFFIX = ".j2"
MODE_RE = re.compile(r"0?[0-7]{3,4}")
EACH_RE = re.compile(r"\s*([a-z_][a-z0-9_]*)\s+in\s+(\S.*)")
OWNER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class Attributes:
    owner: str
    group: str
    mode: str


@dataclass(frozen=True)
class Manifest:
    files: tuple[tuple[str, Attributes], ...] = ()
    directories: tuple[tuple[str, Attributes], ...] = ()
    each: tuple[tuple[str, str, str], ...] = ()     # (path glob, variable, Jinja expression)


class OverlayLoader(jinja2.BaseLoader):
    """Templates (and what they include) from inside the overlays directory, read like every input file."""

    def __init__(self, root: Path, label: str) -> None:
        self.root = root
        self.label = label

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        pieces = jinja2.loaders.split_template_path(template)   # refuses '..'
        path = self.root.joinpath(*pieces)
        if not path.exists() and not path.is_symlink():
            raise jinja2.TemplateNotFound(template)
        label = f"{self.label}/{'/'.join(pieces)}"
        text = read_text(inside(self.root, path, label), label, TEMPLATE_LIMIT, nofollow=True)
        return text, str(path), lambda: True


class Templates:
    """One sandboxed Jinja environment over the overlays directory, and errors translated into InputError."""

    def __init__(self, overlays_dir: Path) -> None:
        self.root = Path(overlays_dir).resolve()
        self.label = Path(overlays_dir).name
        self.env = sandbox(
            loader=OverlayLoader(self.root, self.label),
            keep_trailing_newline=True,
            trim_blocks=True,     # a line holding only a {% tag %} leaves no blank line
            lstrip_blocks=True,
        )
        # A role image renders the node overlays once per node: parse and compile each thing once.
        self._inline: dict[str, jinja2.Template] = {}
        self._manifests: dict[str, Manifest] = {}

    def manifest(self, name: str) -> Manifest:
        """The overlay's manifest.yaml, read once."""
        if name not in self._manifests:
            self._manifests[name] = read_manifest(self.root / name, f"{self.label}/{name}")
        return self._manifests[name]

    # Whatever a template raises (a sandbox refusal, 1/0, 1 + 'a', a recursion, its CPU time or
    # memory used up) is one InputError naming the file and line; InputError (a file that may
    # not be read) passes through as it is.

    def render_file(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return render(self.env.get_template(name), context)
        except InputError:
            raise
        except Exception as exc:
            raise self._error(name, exc) from None

    def render_text(self, where: str, text: str, context: Mapping[str, Any]) -> str:
        """A short template written inline: a file name, an owner, a manifest expression."""
        if "{" not in text:
            return text
        try:
            if text not in self._inline:
                self._inline[text] = self.env.from_string(text)
            return render(self._inline[text], context)
        except InputError:
            raise
        except Exception as exc:
            raise self._error(where, exc, inline=text) from None

    def evaluate(self, where: str, expression: str, context: Mapping[str, Any]) -> Any:
        try:
            return evaluate(self.env.compile_expression(expression, undefined_to_none=False), context)
        except InputError:
            raise
        except Exception as exc:
            raise self._error(where, exc, inline=expression) from None

    def _error(self, name: str, exc: Exception, inline: str | None = None) -> InputError:
        hint = "the variables templates may use are listed in overlays/README.md"
        if isinstance(exc, UnicodeDecodeError):
            return InputError(f"{self.label}/{name}: not UTF-8 text", hint="drop the .j2 suffix of binary files")
        if isinstance(exc, jinja2.TemplateSyntaxError):
            where = f"{self.label}/{exc.name or name}" + (f": line {exc.lineno}" if inline is None else "")
            return InputError(f"{where}: {exc.message}", hint="fix the Jinja syntax")
        if not isinstance(exc, jinja2.TemplateError | MemoryError | RecursionError | RenderTimeout):
            hint = "fix the expression at that line (Jinja runs it as Python would)"
        if isinstance(exc, SecurityError | MemoryError | RecursionError | RenderTimeout):
            hint = ("templates run in a sandbox, bounded in size, memory and time (README, 'Hostile input'): "
                    "use the variables listed in overlays/README.md, not Python internals")
        if isinstance(exc, jinja2.TemplateNotFound):
            exc.message = f"no template {shown(exc.name)} inside {self.label}/"
        if inline is not None:
            return InputError(f"{self.label}/{name}: in {shown(inline)}: {problem(exc)}", hint=hint)
        where, line = self._failing_line(exc.__traceback__, name)
        return InputError(f"{self.label}/{where}: line {line}: {problem(exc)}", hint=hint)

    def _failing_line(self, tb: TracebackType | None, name: str) -> tuple[str, int | str]:
        """Jinja rewrites tracebacks so template frames carry the template's file and line."""
        found: tuple[str, int | str] = (name, "?")
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(str(self.root) + os.sep):
                found = (os.path.relpath(filename, self.root), tb.tb_lineno)
            tb = tb.tb_next
        return found


def render_overlay(templates: Templates, name: str, context: Mapping[str, Any], *,
                   wanted_by: str) -> list[ImageFile]:
    """Every file and managed directory of one overlay, rendered for `context`."""
    top = templates.root / name
    if not top.is_dir():
        raise InputError(f"{wanted_by}: overlays: no overlay directory {templates.label}/{name}",
                         hint=f"create {templates.label}/{name}/ or remove it from the list")
    if top.is_symlink():
        # os.walk would walk wherever it points: a community overlay linking to ~/.ssh.
        raise InputError(f"{templates.label}/{name}: is a symlink to a directory; symlinked directories are "
                         "not supported", hint=f"make {templates.label}/{name} a real directory")
    manifest = templates.manifest(name)
    out: list[ImageFile] = []
    for rel, is_dir in _entries(top, manifest, f"{templates.label}/{name}"):
        key = rel[: -len(TEMPLATE_SUFFIX)] if not is_dir and rel.endswith(TEMPLATE_SUFFIX) else rel
        rules = manifest.directories if is_dir else manifest.files
        attrs = next((a for glob, a in rules if fnmatch.fnmatchcase(key, glob)), None)
        if is_dir and attrs is None:
            continue  # only directories the manifest describes; others are made as needed
        source = f"{templates.label}/{name}/{rel}"
        for bound in _bindings(templates, manifest, rel, source, context):
            scope = {**context, **bound}
            out.append(_render_entry(templates, name, rel, key, is_dir, attrs, scope, source))
    return out


def _render_entry(templates: Templates, name: str, rel: str, key: str, is_dir: bool, attrs: Attributes | None,
                  scope: Mapping[str, Any], source: str) -> ImageFile:
    parts = [templates.render_text(f"{name}/{rel}", part, scope) for part in key.split("/")]
    for part in parts:
        if part in ("", ".", "..") or "/" in part or control_problem(part) or len(part.encode()) > MAX_NAME_BYTES:
            raise InputError(f"{source}: the name renders to {shown(part)}, which is not one path component",
                             hint="a templated name must give a plain file name inside the image root")
    attrs = attrs or Attributes("root", "root", "0644")
    owner = templates.render_text(f"{name}/{MANIFEST}", attrs.owner, scope)
    group = templates.render_text(f"{name}/{MANIFEST}", attrs.group, scope)
    for who in (owner, group):
        if not OWNER_RE.fullmatch(who):
            raise InputError(f"{templates.label}/{name}/{MANIFEST}: owner {shown(who)} (for {key}) is not a user name",
                             hint="owners and groups are names from the image's /etc/passwd, like root or munge")
    if is_dir:
        data = b""
    elif rel.endswith(TEMPLATE_SUFFIX):
        data = templates.render_file(f"{name}/{rel}", scope).encode()
    else:
        real = inside(templates.root / name, templates.root / name / rel, source)
        data = read_bytes(real, source, FILE_LIMIT, nofollow=True)
    return ImageFile(path="/" + "/".join(parts), data=data, mode=int(attrs.mode, 8), owner=owner, group=group,
                     directory=is_dir, source=source)


def _entries(top: Path, manifest: Manifest, label: str) -> Iterator[tuple[str, bool]]:
    """(relative path, is directory) for the overlay tree, plus directories the manifest creates."""
    real_top = top.resolve()
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        base = Path(dirpath)
        for entry in [*dirnames, *sorted(filenames)]:
            path = base / entry
            rel = path.relative_to(top).as_posix()
            _check_kind(path, real_top, f"{label}/{rel}")
            if rel == MANIFEST:
                continue
            seen.add(rel)
            yield rel, entry in dirnames
    for glob, _ in manifest.directories:
        if not any(c in glob for c in "*?[") and glob not in seen:
            yield glob, True


def _check_kind(path: Path, real_top: Path, where: str) -> None:
    """Regular files, directories and symlinks to files inside the overlay; nothing else is read."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        link = os.readlink(path)
        link = link if len(link) <= 80 and not control_problem(link) else shown(link)
        try:
            target = path.resolve(strict=True)
        except RuntimeError:
            raise InputError(f"{where}: is a symlink loop (to {link})", hint="fix or remove the link") from None
        except OSError as exc:
            problem = "is a symlink loop" if exc.errno == errno.ELOOP else "symlink points nowhere"
            raise InputError(f"{where}: {problem} (to {link})", hint="fix or remove the link") from None
        if not target.is_relative_to(real_top):
            raise InputError(f"{where}: symlink points outside the overlay (to {link})",
                             hint="copy the file into the overlay instead")
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{where}: symlinked directories are not supported", hint="make it a real directory")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{where}: is {kind_of(mode)}; overlays hold regular files and directories",
                         hint="remove it from the overlay")


def _bindings(templates: Templates, manifest: Manifest, rel: str, source: str,
              context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One scope per combination of the `each:` loops over this path and its parents."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    loops = [(var, expr) for glob, var, expr in manifest.each if any(fnmatch.fnmatchcase(p, glob) for p in prefixes)]
    choices: list[list[tuple[str, Any]]] = []
    for var, expr in loops:
        items = templates.evaluate(source.removeprefix(templates.label + "/"), expr, context)
        if isinstance(items, str | bytes | Mapping) or not hasattr(items, "__iter__"):
            raise InputError(f"{source}: each: {shown(expr)} is not a list", hint="loop over a list such as users")
        choices.append([(var, item) for item in items])
    return [dict(combo) for combo in product(*choices)]


def read_manifest(top: Path, label: str) -> Manifest:
    path = top / MANIFEST
    if not os.path.lexists(path):
        return Manifest()
    with labelled(path, f"{label}/{MANIFEST}"):
        data = read_yaml_file(inside(top.resolve(), path, f"{label}/{MANIFEST}"), path.name, nofollow=True)
        r = Reader({} if data is None else data, path)
        files = _rules(r.sub("files", {}))
        directories = _rules(r.sub("directories", {}))
        each_reader = r.sub("each", {})
        each = []
        for glob, loop in dict(each_reader.data).items():
            match = EACH_RE.fullmatch(loop) if isinstance(loop, str) and not control_problem(loop) else None
            if match is None:
                each_reader.fail(f"{shown(loop)} is not 'VARIABLE in LIST'", key=str(glob)[:60],
                                 hint="e.g. 'user in users'")
            each.append((str(glob).strip("/"), match.group(1), match.group(2)))
        r.done()
    return Manifest(files=files, directories=directories, each=tuple(each))


def _rules(r: Reader) -> tuple[tuple[str, Attributes], ...]:
    rules = []
    for glob in list(r.data):
        entry = r.sub(str(glob))
        owner = entry.text("owner", "root")
        group = entry.text("group", owner)
        mode = entry.take("mode", "0644")
        if not isinstance(mode, str) or not MODE_RE.fullmatch(mode):
            entry.fail(f"{shown(mode)} is not an octal mode in quotes", key="mode",
                       hint='write it as a string, e.g. mode: "0600" (YAML reads 0600 unquoted as a number)')
        entry.done()
        rules.append((str(glob).strip("/"), Attributes(owner, group, mode)))
    return tuple(rules)

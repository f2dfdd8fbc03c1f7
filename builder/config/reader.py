"""Reading one YAML mapping with exact error paths: `file: key.path: problem (fix: …)`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from builder.config.grammar import control_problem, shown
from builder.errors import InputError

T = TypeVar("T")

_MISSING = object()


class Reader:
    """Takes keys out of a mapping one by one; `done()` rejects whatever is left."""

    def __init__(self, data: object, file: Path, path: str = "") -> None:
        self.file = file
        self.path = path
        if not isinstance(data, dict):
            self.fail(f"expected a mapping, got {type_name(data)}", path=path)
        self.data: dict[str, Any] = dict(data)
        self.known: list[str] = []

    def key_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        if len(key) > 80 or control_problem(key):   # a key from the file itself, shown safely
            key = shown(key)
        return f"{self.path}.{key}" if self.path else key

    def fail(self, problem: str, *, key: str | int | None = None, path: str | None = None,
             hint: str | None = None) -> NoReturn:
        where = path if path is not None else self.key_path(key) if key is not None else self.path
        raise InputError(f"{self.file.name}: {where or '(top level)'}: {problem}", hint=hint)

    def take(self, key: str, default: object = _MISSING) -> Any:
        self.known.append(key)
        if key in self.data:
            return self.data.pop(key)
        if default is _MISSING:
            self.fail("is missing", key=key, hint=f"add '{key}:' to {self.path or 'the file'}")
        return default

    def text(self, key: str, default: object = _MISSING, *, pattern: Callable[[str], object] | None = None,
             expected: str = "a string", check: Callable[[str], str | None] | None = None,
             hint: str | None = None) -> Any:
        """A string without control characters, matching `pattern` (whole) and passing `check`."""
        value = self.take(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool | int | float) or value is None or hasattr(value, "isoformat"):
            self.fail(f"YAML reads the unquoted {shown(value)} as {yaml_kind(value)}, not text; quote it",
                      key=key, hint=f"write it in double quotes, e.g. {key}: \"...\"")
        if not isinstance(value, str):
            self.fail(f"{shown(value)} is not {expected}", key=key, hint=hint)
        problem = control_problem(value)
        if problem is None and pattern is not None and not pattern(value):
            problem = f"is not {expected}"
        if problem is None and check is not None:
            problem = check(value)
        if problem is not None:
            self.fail(f"{shown(value)} {problem}", key=key, hint=hint)
        return value

    def integer(self, key: str, default: object = _MISSING, *, minimum: int = 0,
                maximum: int | None = None) -> Any:
        value = self.take(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{shown(value)} is not a whole number >= {minimum}", key=key)
        if maximum is not None and value > maximum:
            self.fail(f"{shown(value)} is more than {maximum}", key=key)
        return value

    def flag(self, key: str, default: object = _MISSING, *, hint: str | None = None) -> Any:
        value = self.take(key, default)
        if not isinstance(value, bool):
            self.fail(f"{shown(value)} is not true or false", key=key, hint=hint)
        return value

    def items(self, key: str, default: object = _MISSING) -> list[Any]:
        value = self.take(key, default)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"expected a list, got {type_name(value)}", key=key)
        return value

    def parse(self, key: str, convert: Callable[[Any], T], expected: str,
              default: object = _MISSING) -> T:
        value = self.take(key, default)
        if value is default and default is not _MISSING:
            return value  # type: ignore[return-value]
        try:
            return convert(value)
        except (ValueError, TypeError):
            self.fail(f"{shown(value)} is not {expected}", key=key)

    def sub(self, key: str, default: object = _MISSING) -> Reader:
        return Reader(self.take(key, default), self.file, self.key_path(key))

    def item(self, key: str, index: int, value: object) -> Reader:
        return Reader(value, self.file, f"{self.key_path(key)}[{index}]")

    def done(self) -> None:
        for key in self.data:
            name = str(key) if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", str(key)) else shown(key)
            close = difflib.get_close_matches(name, self.known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else (
                "known keys: " + ", ".join(sorted(self.known)))
            self.fail("unknown key", key=name, hint=hint)


def yaml_kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int | float):
        return "a number"
    return "a date"


def type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__)

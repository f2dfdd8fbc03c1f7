"""The one Jinja environment templates run in: sandboxed, because profiles and overlays are code.

`check` renders every template, as whoever runs it (often root). Jinja's immutable sandbox stops
templates from reaching Python internals (`lipsum.__globals__`, `cycler.__init__.__globals__`,
`''.__class__.__mro__`) and from changing the values they are given. On top of it, nothing a
template builds may be larger than a file an image could want (MAX_SIZE characters or items):
`*` and `**`, widths given to filters and string methods (`center`, `indent`, `zfill`, `ljust`,
`'%3000000000d'|format`) and the result of every filter or call are checked, and `render` stops
an output at MAX_SIZE characters. limits.py bounds the CPU time and memory a render may take;
`problem` turns whatever a template raised into one line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from builder.render.limits import RENDER_MEMORY, RenderTimeout, cpu_budget

MAX_SIZE = 16 << 20       # characters (or items) one value or one output may have
MAX_EXPONENT = 1024
# Filters whose arguments after the value are sizes: a width, a length, a count of lines or slices.
SIZED_FILTERS = frozenset({"center", "indent", "truncate", "wordwrap", "batch", "slice"})
SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})     # of str
# A printf width or precision (`%3000000000d`, `%.9999999999f`) or a str.format one (`{:3000000000}`).
_PRINTF_SIZES = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
_FORMAT_SIZES = re.compile(r"\{[^{}]*:[^{}\d]*(\d*)(?:[,_]?\.(\d*))?")


def _check_size(what: str, size: int) -> None:
    if size > MAX_SIZE:
        raise SecurityError(f"{what} {size} is larger than a template may make (at most {MAX_SIZE})")


def _check_pattern(pattern: object, sizes: re.Pattern[str]) -> None:
    if isinstance(pattern, str):
        for match in sizes.finditer(pattern):
            for number in match.groups():
                if number and (len(number) > 9 or int(number) > MAX_SIZE):
                    raise SecurityError(f"the width {number[:20]} in a format is larger than {MAX_SIZE}")


def _check_result(value: Any) -> Any:
    if isinstance(value, str | bytes | list | tuple | dict):
        _check_size("a value of length", len(value))
    return value


def _bounded_filter(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    passes = getattr(filter_, "jinja_pass_arg", None)
    first = 1 if passes is not None else 0      # the context or environment comes before the value

    @functools.wraps(filter_)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if name == "format" and len(args) > first:
            _check_pattern(args[first], _PRINTF_SIZES)
        if name in SIZED_FILTERS:
            for value in (*args[first + 1:], *kwargs.values()):
                if isinstance(value, int) and not isinstance(value, bool):
                    _check_size(f"the size {name}() was given,", value)
        return _check_result(filter_(*args, **kwargs))
    return bounded


@functools.cache
def _bounded_filters() -> tuple[tuple[str, Callable[..., Any]], ...]:
    """Jinja's filters, each wrapped once per process (a profile line makes an environment of its own)."""
    return tuple((name, _bounded_filter(name, f)) for name, f in DEFAULT_FILTERS.items())


class TemplateSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = dict(_bounded_filters())

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and len(seq) * count > MAX_SIZE:
                    raise SecurityError(f"'*' would make {len(seq) * count} items; at most {MAX_SIZE}")
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"the exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "%":
            _check_pattern(left, _PRINTF_SIZES)
        return _check_result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A call from a template: a string method's widths (`'a'.center(10**10)`) checked first."""
        target = getattr(__obj, "__wrapped__", __obj)     # the sandbox wraps str.format
        if isinstance(getattr(target, "__self__", None), str):
            method = getattr(target, "__name__", "")
            if method in ("format", "format_map"):
                _check_pattern(target.__self__, _FORMAT_SIZES)
            if method in SIZED_METHODS:
                for value in (*args, *kwargs.values()):
                    if isinstance(value, int) and not isinstance(value, bool):
                        _check_size(f"the size {method}() was given,", value)
        return _check_result(super().call(__context, __obj, *args, **kwargs))


def sandbox(**options: Any) -> jinja2.Environment:
    """A sandboxed environment where undefined variables are errors."""
    return TemplateSandbox(undefined=jinja2.StrictUndefined, autoescape=False, **options)


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """The template's output, within the CPU budget and at most MAX_SIZE characters."""
    with cpu_budget():
        return _joined(template.generate(context))


def evaluate(expression: Callable[..., Any], context: Mapping[str, Any]) -> Any:
    with cpu_budget():
        return expression(context)


def _joined(pieces: Iterable[str]) -> str:
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_SIZE:
            raise SecurityError(f"the output is larger than {MAX_SIZE} characters")
        out.append(piece)
    return "".join(out)


def problem(exc: BaseException) -> str:
    """One line for whatever a template raised, without its traceback."""
    if isinstance(exc, jinja2.TemplateError):
        return " ".join(str(exc.message or exc).split())[:300]
    if isinstance(exc, MemoryError):
        return f"needs more memory than a render may use ({RENDER_MEMORY >> 20} MiB)"
    if isinstance(exc, RecursionError):
        return "recurses too deeply (a macro calling itself, or a template including itself)"
    if isinstance(exc, RenderTimeout):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__

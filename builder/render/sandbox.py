"""The one Jinja environment templates run in: sandboxed, because profiles and overlays are code.

`check` renders every template, as whoever runs it (often root). Jinja's immutable sandbox stops
templates from reaching Python internals (`lipsum.__globals__`, `cycler.__init__.__globals__`,
`''.__class__.__mro__`) and from changing the values they are given; on top of it `*` and `**`
may not build values larger than a file an image could want.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_SIZE = 16 << 20       # characters (or items) one `*` may produce
MAX_EXPONENT = 1024


class TemplateSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and len(seq) * count > MAX_SIZE:
                    raise SecurityError(f"'*' would make {len(seq) * count} items; at most {MAX_SIZE}")
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"the exponent {right} is larger than {MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


def sandbox(**options: Any) -> jinja2.Environment:
    """A sandboxed environment where undefined variables are errors."""
    return TemplateSandbox(undefined=jinja2.StrictUndefined, autoescape=False, **options)

"""Fuzzing the cluster file: whatever a mutation makes of a valid file, `check` succeeds or says one line.

Hypothesis mutates a valid cluster file two ways: structurally (a value anywhere replaced by
hostile text, a number, a list, a mapping or nothing; a key removed or added) and as text (bytes
inserted, removed or replaced in the YAML). The number of examples is bounded so the test takes
seconds; no example database is written (`database=None`), so the run leaves no files behind.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.cli import main
from tests.config.hostile_support import VALID, Sandbox

FUZZ = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from("\n\r\t\0\x1b\u2028 :$!&*#{}[]'\"%@|>-_./\\aZ09"), max_size=20),
    st.sampled_from(["root", "default", "ALL", "localhost", "10.0.0.1", "http://[::1/x", "~", "yes", "0x10",
                     "../../etc/passwd", "{{ lipsum.__globals__ }}", "a" * 300, "", "head", "gps", "node01"]),
)
scalars = st.one_of(hostile_text, st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                    st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(hostile_text, inner, max_size=4)),
                      max_leaves=8)


def _containers(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a mapping or list inside the cluster data (the places a mutation can act)."""
    found = [path]
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        if isinstance(value, dict | list):
            found.extend(_containers(value, (*path, key)))
    return found


@st.composite
def mutated_cluster(draw: st.DrawFn) -> str | bytes:
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_containers(data)))
        target = data
        for part in path:
            target = target[part]
        keys = list(target.keys()) if isinstance(target, dict) else list(range(len(target)))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(values)
        elif action == "remove" and keys:
            del target[draw(st.sampled_from(keys))]
        elif isinstance(target, dict):
            target[draw(hostile_text)] = draw(values)
        else:
            target.append(draw(values))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()))
    if not draw(st.booleans()):
        return text
    raw = bytearray(text.encode())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.binary(min_size=1, max_size=6))
        if how == "insert":
            raw[at:at] = piece
        elif how == "delete":
            del raw[at:at + len(piece)]
        else:
            raw[at:at + len(piece)] = piece
    return bytes(raw)


def _check(cluster: str | bytes) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(Sandbox(Path(tmp) / "box", cluster_text=cluster), clear=False)


@FUZZ
@given(mutated_cluster())
def test_every_mutation_is_success_or_one_line(cluster: str | bytes) -> None:
    code, out, err = _check(cluster)
    assert "Traceback" not in err
    if code == 0:
        assert out.strip().endswith(": ok"), out
        return
    assert code == 1, (code, err)
    # A warning about an earlier role's plan (e.g. a Pi 5's power button) may come first; the error is one line.
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("clusterbake: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert len(errors[0]) < 600, errors[0]


# --- issue 23: the environment settings and the templates are input too ------------------------

SETTING_NAMES = ("CLUSTERBAKE_JOBS", "CLUSTERBAKE_LAYER_CACHE_GIB", "CLUSTERBAKE_DEBIAN_MIRROR",
                 "CLUSTERBAKE_CACHE", "CLUSTERBAKE_PROFILES", "CLUSTERBAKE_OVERLAYS")
# What an environment variable can hold: any text but NUL (and no lone surrogates).
env_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(["2", "0", "-1", "\u0663", "\u00b2", "9" * 5000, "http://deb.debian.org/debian",
                     "http://deb.debian.org/debian\nTrusted: yes", "file:///etc", "javascript:x", "--opt", "/", "."]),
)


def _outcome_is_one_line(code: int, out: str, err: str, failing: int) -> None:
    assert "Traceback" not in err
    if code == 0:
        assert out.strip().endswith(": ok"), out
        return
    assert code == failing, (code, err)
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("clusterbake: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert len(errors[0]) < 600, errors[0]


def _run(box: Sandbox, *, clear: bool = True) -> tuple[int, str, str]:
    """`check` in this process with the box's environment (alone, or over this process's with clear=False)."""
    argv = ["check", "--cluster", box.write(), "--cache", str(box.root / "cache")]
    saved = dict(os.environ)
    err, out = io.StringIO(), io.StringIO()
    try:
        if clear:
            os.environ.clear()
        os.environ.update(box.environment())
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


@FUZZ
@given(st.dictionaries(st.sampled_from(SETTING_NAMES), env_text, min_size=1, max_size=3))
def test_every_environment_is_success_or_one_line(settings_: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox(Path(tmp) / "box")
        box.env.update(settings_)
        _outcome_is_one_line(*_run(box), failing=2)


# Pieces of Jinja a hostile template is made of: values, operators, filters and statements with
# sizes and counts from small to absurd. Every combination must render or fail in one line.
numbers = st.sampled_from(["0", "1", "-1", "3", "10 ** 9", "10 ** 10", "1114112", "2 ** 64", "10 ** 1000", "1.5"])
atoms = st.one_of(numbers, st.sampled_from(["'a'", "'%c'", "'%3000000000d'", "'{:3000000000}'", "'x' * 1000",
                                            "[1, 2]", "{}", "none", "range(5)", "nodes", "node.name", "lipsum",
                                            "cycler", "''.__class__", "users[0]", "network.subnet"]))
TEMPLATE_FILTERS = ("center", "indent", "format", "join", "int", "list", "length", "batch", "slice", "wordwrap",
                    "truncate", "replace('a', 'bb')", "string", "sum", "first", "e", "tojson", "unique")
METHODS = ("center", "zfill", "ljust", "rjust", "format", "join", "split", "upper", "replace")


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(atoms)
    inner = draw(expressions(depth + 1))
    kind = draw(st.sampled_from(["binop", "filter", "method", "call"]))
    if kind == "binop":
        return f"({inner} {draw(st.sampled_from(['+', '-', '*', '/', '//', '%', '**', '~']))} {draw(atoms)})"
    if kind == "filter":
        name = draw(st.sampled_from(TEMPLATE_FILTERS))
        return f"({inner} | {name}({draw(numbers)}))" if "(" not in name and draw(st.booleans()) else \
            f"({inner} | {name})"
    if kind == "method":
        return f"({inner}).{draw(st.sampled_from(METHODS))}({draw(numbers)})"
    return f"range({draw(numbers)})"


@st.composite
def templates(draw: st.DrawFn) -> str:
    body = "{{ " + draw(expressions()) + " }}"
    wrap = draw(st.sampled_from(["plain", "loop", "macro", "set", "include"]))
    if wrap == "loop":
        return "{% for i in range(" + draw(numbers) + ") %}" + body + "{% endfor %}"
    if wrap == "macro":
        return "{% macro m(n) %}" + body + "{{ m(n) if n else '' }}{% endmacro %}{{ m(" + draw(numbers) + ") }}"
    if wrap == "set":
        return "{% set x %}" + body + "{% endset %}{{ x | length }}"
    if wrap == "include":
        return "{% include " + draw(st.sampled_from(["'base/etc/motd.j2'", "'/etc/passwd'", "'../x'"])) + " %}"
    return body


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(templates())
def test_every_template_renders_or_fails_in_one_line(template: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox(Path(tmp) / "box")
        (box.overlays / "base" / "etc" / "motd.j2").write_text(template + "\n")
        code, out, err = _run(box)
        _outcome_is_one_line(code, out, err, failing=1)
        assert code == 0 or "base/etc/motd" in err, err

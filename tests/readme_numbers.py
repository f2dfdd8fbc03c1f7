"""The README's measured figures, made from the files that record the runs they come from.

Two sections of README.md are generated, each between a start and an end marker:
  suite   from tests/measured/suite.json  (`make measure`: one whole run of the README's test command)
          and from what that command collects now (`pytest --collect-only`), per folder: the run
          is shown as what it is, a run of its own commit, beside the suite as it is today
  bench   from tests/measured/bench.json  (`make bench`: the speed goals as ratios)
`python -m tests.readme_numbers --write` rewrites them; `--check` exits 1 when one is stale.
Nothing between the markers is edited by hand; tests/test_readme_numbers.py holds the README to it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.paths import repo_root
from tests.bench.speed import markdown_report
from tests.suite_record import collected_nodeids, folder_of

README = repo_root() / "README.md"
MEASURED = repo_root() / "tests" / "measured"
END = "<!-- end of generated section -->"


def start_marker(name: str) -> str:
    return (f"<!-- generated section {name}: `python -m tests.readme_numbers --write` "
            f"from tests/measured/{name}.json -->")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def suite_report(record: Mapping[str, Any], now: Mapping[str, int] | None = None) -> str:
    """The suite today (tests collected per folder) and its last whole recorded run, per folder.

    `now` is what the README's test command collects at this commit (by default, asked of pytest).
    """
    now = Counter(folder_of(nodeid) for nodeid in collected_nodeids()) if now is None else Counter(now)
    machine = record["machine"]
    commit = record["commit"] + (" with uncommitted changes" if record["dirty"] else "")
    lines = [
        f"The suite at this commit: **{now.total()} tests** collected by `make test` (`pytest --collect-only`).",
        "",
        f"Its last whole recorded run (`make measure`) was one `{record['command']}` run ({machine['date']}, "
        f"commit {commit}, {machine['nproc']} cores ({machine['cpu']}), {machine['memory_mib'] // 1024} GiB, "
        f"load {machine['load_average'][0]} at the start): "
        f"**{record['passed']} passed, {record['failed']} failed, {record['skipped']} skipped, "
        f"{record['error']} errors** of {record['collected']} collected, in {_minutes(record['seconds'])} "
        f"(exit status {record['exit_status']}).",
        "",
        "| folder | tests now | collected in the run | passed | failed | skipped | errors | minutes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    folders = record["folders"]
    for name in sorted(set(folders) | set(now)):
        if name in folders:
            f = folders[name]
            ran = (f"{f['collected']} | {f['passed']} | {f['failed']} | {f['skipped']} | {f['error']} | "
                   f"{_minutes(f['seconds'])}")
        else:
            ran = "– | – | – | – | – | –"
        lines.append(f"| `{name}` | {now[name]} | {ran} |")
    return "\n".join(lines)


SECTIONS: dict[str, Callable[[Mapping[str, Any]], str]] = {"suite": suite_report, "bench": markdown_report}


def load(name: str, folder: Path = MEASURED) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    return data


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(start_marker(name)) + r"\n(.*?)\n" + re.escape(END), re.S)


def section(readme: str, name: str) -> str | None:
    """The text between a section's markers, or None when the README has no such section."""
    found = _pattern(name).search(readme)
    return found.group(1) if found else None


def regenerate(readme: str, folder: Path = MEASURED) -> str:
    """The README with every generated section made anew from its file."""
    for name, render in SECTIONS.items():
        replacement = f"{start_marker(name)}\n{render(load(name, folder))}\n{END}"
        readme, count = _pattern(name).subn(lambda _, text=replacement: text, readme)
        if count != 1:
            raise SystemExit(f"README.md: the section '{name}' must appear once between its markers "
                             f"(found {count}); start marker: {start_marker(name)}")
    return readme


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.readme_numbers", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the generated sections of README.md")
    action.add_argument("--check", action="store_true", help="exit 1 if a generated section is stale")
    args = parser.parse_args(argv)
    current = README.read_text()
    fresh = regenerate(current)
    if args.write:
        README.write_text(fresh)
        return 0
    if fresh != current:
        print("README.md: a generated section is stale; run `python -m tests.readme_numbers --write`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

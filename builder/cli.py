"""Command line: `python -m builder COMMAND`. Expected failures print one line, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from builder import progress
from builder.errors import ClusterbakeError
from builder.signals import interruptible

log = logging.getLogger("clusterbake")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from builder.acquire import fetch_base
    from builder.config import load_cluster

    cluster = load_cluster(args.cluster)
    raw = fetch_base(cluster.base_image, cluster_dir=cluster.source.parent, cache=args.cache,
                     offline=args.offline)
    print(raw)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from builder.config import load_cluster
    from builder.paths import repo_root

    cluster = load_cluster(args.cluster, profiles_dir=repo_root() / "profiles")
    print(f"{cluster.source}: {len(cluster.nodes)} nodes, roles {', '.join(cluster.roles)}: ok")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m builder", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and every command run")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress, only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("--cluster", type=Path, default=Path("cluster.yaml"),
                       help="the cluster file (default: ./cluster.yaml)")
        p.add_argument("--cache", type=Path, default=None,
                       help="cache directory (default: $CLUSTERBAKE_CACHE or $XDG_CACHE_HOME/clusterbake)")
        return p

    command("check", _cmd_check, "validate the cluster file and its profiles")
    fetch = command("fetch", _cmd_fetch, "download, verify and cache the base image; print its path")
    fetch.add_argument("--offline", action="store_true", help="use the cache only; never download")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress.configure(quiet=args.quiet, debug=args.debug)
    if args.cache is None:
        from builder.paths import cache_root

        args.cache = cache_root()
    try:
        with interruptible():
            return int(args.func(args))
    except ClusterbakeError as exc:
        if args.debug:
            log.exception("failed")
        print(f"clusterbake: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code

"""Command line: `python -m builder COMMAND`. Expected failures print one line, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from builder import progress
from builder.errors import ClusterbakeError
from builder.process.signals import interruptible
from builder.settings import settings

if TYPE_CHECKING:
    from builder.apply.desired import NodePlan
    from builder.config import Cluster

log = logging.getLogger("clusterbake")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from builder.acquire import fetch_base
    from builder.config import load_cluster

    cluster = load_cluster(args.cluster)
    raw = fetch_base(cluster.base_image, cache=args.cache, offline=args.offline)
    print(raw)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """The cluster file, and every role's plan rendered (profiles, GPIO, templates): seconds, no image."""
    from builder.build import plan_job, profiles_dir
    from builder.config import load_cluster
    from builder.render.platform import image_targets

    cluster = load_cluster(args.cluster, profiles_dir=profiles_dir())
    plan_job(cluster, image_targets(cluster), secrets=False)  # checking must not create the cluster's munge key
    print(f"{cluster.source}: {len(cluster.nodes)} nodes, roles {', '.join(cluster.roles)}: ok")
    return 0


def _build_requests(args: argparse.Namespace, targets: list[tuple[str | None, str | None]] | None = None) -> int:
    """Build the (role, node) `targets`, or every artefact of the cluster (`image_targets`) when None."""
    from builder.build import build_job, plan_job, profiles_dir
    from builder.config import load_cluster
    from builder.render.platform import image_targets

    cluster = load_cluster(args.cluster, profiles_dir=profiles_dir())
    if targets is None:
        targets = image_targets(cluster)
    job = plan_job(cluster, targets, secrets=not args.no_secrets, out_dir=args.out, cache=args.cache,
                   offline=args.offline)
    for built in build_job(job):
        if built.next_steps is not None:
            print(built.next_steps, flush=True)
        print(built.path, flush=True)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    return _build_requests(args, [(args.role, args.node)])


def _cmd_images(args: argparse.Namespace) -> int:
    return _build_requests(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Build the stand-in base (once), serve it on 127.0.0.1, build the example cluster's images from it."""
    from builder.demo.cluster import demo_cluster_file
    from builder.demo.download_site import serve_standin

    with serve_standin(args.cache) as base_image:
        args.cluster = demo_cluster_file(args.cluster, base_image, args.cache / "demo" / "cluster.yaml")
        if args.role or args.node:
            return _build_requests(args, [(args.role, args.node)])
        return _cmd_images(args)


def _cmd_release(args: argparse.Namespace) -> int:
    """Every role image without secrets into dist/: xz, bmap, manifests, os_list.json, signed SHA256SUMS."""
    from builder.build import profiles_dir
    from builder.config import load_cluster
    from builder.publish import ReleaseRequest, make_release
    from builder.publish.signing import release_signer

    def release(cluster_file: Path) -> int:
        cluster = load_cluster(cluster_file, profiles_dir=profiles_dir())
        print(make_release(ReleaseRequest(cluster=cluster, key=args.key, dist=args.dist, cache=args.cache,
                                          offline=args.offline, fast=args.fast, zstd=args.zstd,
                                          base_url=args.base_url)), flush=True)
        return 0

    if not args.demo:
        return release(args.cluster)
    from builder.demo.cluster import demo_cluster_file
    from builder.demo.download_site import serve_standin

    release_signer(args.key)  # fail on a missing key before the stand-in is made or served
    with serve_standin(args.cache) as base_image:
        return release(demo_cluster_file(args.cluster, base_image, args.cache / "demo" / "cluster.yaml"))


def _cmd_verify_release(args: argparse.Namespace) -> int:
    from builder.publish import verify_release

    names = verify_release(args.dist, key_file=args.key_file, fingerprint=args.key or None, deep=not args.quick)
    print(f"{args.dist}: good signature; {len(names)} files match SHA256SUMS; os_list.json agrees")
    return 0


def _cmd_flash(args: argparse.Namespace) -> int:
    from builder.flash import flash, parse_size

    device = flash(args.image, args.device, max_size=parse_size(args.max_size), force=args.force, yes=args.yes,
                   bmap=args.bmap, use_bmap=not args.no_bmap)
    print(f"{args.image} written to {device.describe()} and read back: identical")
    return 0


def _cmd_netboot(args: argparse.Namespace) -> int:
    """The diskless nodes' served tree from the compute role image (built, or found in the cache)."""
    from builder.build import build_job, overlays_dir, plan_job, profiles_dir
    from builder.config import load_cluster
    from builder.config.netboot import NETBOOT_ROLES
    from builder.netboot.served_tree import require_diskless, served_tree

    def netboot(cluster_file: Path) -> int:
        cluster = load_cluster(cluster_file, profiles_dir=profiles_dir())
        require_diskless(cluster)
        job = plan_job(cluster, [(NETBOOT_ROLES[0], None)], out_dir=args.out, cache=args.cache, offline=args.offline)
        [built] = build_job(job)
        tree = served_tree(cluster, built.path, args.tree or args.out / "netboot", overlays_dir=overlays_dir())
        print(tree, flush=True)
        if args.push:
            _push_tree(cluster, tree, args.identity)
        return 0

    if not args.demo:
        return netboot(args.cluster)
    from builder.demo.cluster import demo_cluster_file
    from builder.demo.download_site import serve_standin

    with serve_standin(args.cache) as base_image:
        return netboot(demo_cluster_file(args.cluster, base_image, args.cache / "demo" / "cluster.yaml"))


def _push_tree(cluster: Cluster, tree: Path, identity: Path | None) -> None:
    """The served tree onto the running file server (builder/netboot/push.py), as `apply` reaches it."""
    from builder.apply.commands import with_ssh
    from builder.apply.transport import SshTransport
    from builder.netboot.push import push_tree, remote_command

    assert cluster.fileserver is not None, "the loader refuses a network boot without a file server"
    server = cluster.node(cluster.fileserver.node)

    def push(transport: SshTransport) -> int:
        for line in push_tree(tree, transport.argv(str(server.ip), remote_command()), server=server.name):
            print(f"{server.name}: {line}", flush=True)
        return 0

    with_ssh(cluster, identity, push)


def _node_plans(args: argparse.Namespace) -> tuple[Cluster, tuple[NodePlan, ...]]:
    from builder.apply.commands import plans_for
    from builder.build import overlays_dir, profiles_dir
    from builder.config import load_cluster

    cluster = load_cluster(args.cluster, profiles_dir=profiles_dir())
    return cluster, plans_for(cluster, profiles_dir(), overlays_dir(), tuple(args.node or ()))


def _cmd_status(args: argparse.Namespace) -> int:
    from builder.apply.commands import run_status, with_ssh

    cluster, plans = _node_plans(args)
    return with_ssh(cluster, args.identity, lambda transport: run_status(plans, transport, as_json=args.json))


def _cmd_apply(args: argparse.Namespace) -> int:
    from builder.apply.commands import run_apply, with_ssh

    cluster, plans = _node_plans(args)
    return with_ssh(cluster, args.identity, lambda transport: run_apply(plans, transport, yes=args.yes))


def _cmd_node_card(args: argparse.Namespace) -> int:
    from builder.build import overlays_dir, profiles_dir
    from builder.config import load_cluster
    from builder.render.node_card import node_card

    card = node_card(load_cluster(args.cluster, profiles_dir=profiles_dir()), args.node,
                     profiles_dir=profiles_dir(), overlays_dir=overlays_dir())
    if args.out is None:
        print(card, end="")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(card)
    print(f"{args.out}: put it as node.txt next to clusterbake.txt on the card's boot partition", file=sys.stderr)
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

    def build_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, default=Path("out"), help="output directory (default: out)")
        p.add_argument("--no-secrets", action="store_true",
                       help="bake no munge key (release images: the key goes on the boot partition)")
        p.add_argument("--offline", action="store_true", help="use the cached base image only")

    build = command("build", _cmd_build, "build one role's image, or one node's; print its path last")
    target = build.add_mutually_exclusive_group(required=True)
    target.add_argument("--role", help="a role of the cluster file: one image for all its nodes")
    target.add_argument("--node", help="a node of the cluster file: its identity baked in")
    build_options(build)
    build_options(command("images", _cmd_images, "build one image per role used in the cluster file"))
    demo = command("demo", _cmd_demo, "offline demo: build the example cluster's images from a local stand-in base")
    only = demo.add_mutually_exclusive_group()
    only.add_argument("--role", help="build only this role's image")
    only.add_argument("--node", help="build only this node's image")
    build_options(demo)
    release = command("release", _cmd_release,
                      "build every role image without secrets and publish it to dist/ with signed sums")
    release.add_argument("--key", default="", help="fingerprint of the signing key in $GNUPGHOME (RELEASE_KEY)")
    release.add_argument("--dist", type=Path, default=Path("dist"), help="release directory (default: dist)")
    release.add_argument("--offline", action="store_true", help="use the cached base image only")
    release.add_argument("--fast", action="store_true", help="xz -1 instead of -6: bigger files, much faster")
    release.add_argument("--zstd", action="store_true", help="also write .img.zst images")
    release.add_argument("--base-url", help="URL the files will be downloaded from, for os_list.json "
                                            "(default: file:// URLs of --dist)")
    release.add_argument("--demo", action="store_true", help="from the offline stand-in base (see `demo`)")
    netboot = command("netboot", _cmd_netboot, "the diskless nodes' served tree (TFTP folders, shared root, state "
                                               "folders, the file server's dnsmasq and exports); print its path")
    netboot.add_argument("--out", type=Path, default=Path("out"), help="output directory (default: out)")
    netboot.add_argument("--tree", type=Path, help="the served tree (default: <out>/netboot)")
    netboot.add_argument("--offline", action="store_true", help="use the cached base image only")
    netboot.add_argument("--demo", action="store_true", help="from the offline stand-in base (see `demo`)")
    netboot.add_argument("--push", action="store_true",
                         help="then put the tree onto the running file server over SSH (as `apply` reaches it)")
    netboot.add_argument("--identity", type=Path, help="with --push: SSH private key (default: ssh's own choice)")
    verify = command("verify-release", _cmd_verify_release,
                     "check a release: gpg --verify SHA256SUMS.asc, sha256sum -c, os_list.json")
    verify.add_argument("--dist", type=Path, default=Path("dist"), help="release directory (default: dist)")
    verify.add_argument("--key", default="", help="require this signing key fingerprint (RELEASE_KEY)")
    verify.add_argument("--key-file", type=Path, help="the release's public key (default: your gpg keyring)")
    verify.add_argument("--quick", action="store_true", help="skip decompressing the images")
    flash = command("flash", _cmd_flash, "write an image to an SD card (only mapped blocks with a .bmap) "
                                         "and read it back")
    flash.add_argument("image", type=Path, help=".img, .img.xz or .img.zst")
    flash.add_argument("device", type=Path, help="the whole card, e.g. /dev/sdb or /dev/mmcblk0")
    flash.add_argument("--yes", action="store_true", help="do not ask (scripts); without it a terminal is needed")
    flash.add_argument("--max-size", default="256G", help="refuse larger devices (default: 256G)")
    flash.add_argument("--force", action="store_true", help="write to a device larger than --max-size")
    flash.add_argument("--bmap", type=Path, help="block map (default: <image>.bmap beside the image)")
    flash.add_argument("--no-bmap", action="store_true", help="write every byte, ignoring any block map")
    for name, func, text in (("status", _cmd_status, "each node: reachable, its image, its drift from the plan"),
                             ("apply", _cmd_apply, "bring the running nodes to the cluster file, over SSH")):
        day_two = command(name, func, text)
        day_two.add_argument("--node", action="append", help="only this node (repeat for more)")
        day_two.add_argument("--identity", type=Path, help="SSH private key (default: ssh's own choice)")
        if name == "status":
            day_two.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            day_two.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    card = command("node-card", _cmd_node_card, "the node.txt that makes a card of its role's image this node, "
                                                 "even one added after the image was built")
    card.add_argument("node", help="a node of the cluster file")
    card.add_argument("--out", type=Path, help="write it here (default: print it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress.configure(quiet=args.quiet, debug=args.debug)
    try:
        settings()      # every CLUSTERBAKE_* setting checked first: one line and exit 2 for a bad one
        if args.cache is None:
            from builder.paths import cache_root

            args.cache = cache_root()
        with interruptible():
            return int(args.func(args))
    except ClusterbakeError as exc:
        if args.debug:
            log.exception("failed")
        print(f"clusterbake: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code

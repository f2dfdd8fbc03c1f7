"""`make release`: every role image without secrets, compressed, mapped, summed, signed and listed.

dist/ ends up holding, per role, `<cluster>-<role>-<date>.img.xz` (and `.img.zst` on request),
`<…>.img.bmap` and `<…>.manifest.json`; then `os_list.json` for Raspberry Pi Imager,
`SHA256SUMS` over all of them and its armoured signature `SHA256SUMS.asc`. Everything is made
in a staging directory beside dist/ and swapped in at the end, so dist/ is either the old
release or the complete new one, never a mix.

The signing key is checked before anything is built. With SOURCE_DATE_EPOCH set, the release
date comes from it and the file trees inside the images are identical from build to build.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from builder.acquire.checksum import sha256_file
from builder.build import BuildJob, BuiltImage, build_job, plan_job
from builder.command import require_tool, run
from builder.config.model import Cluster
from builder.errors import InputError, VerificationError
from builder.image import OpenImage
from builder.image.output import atomic_directory
from builder.progress import step
from builder.publish.bmap import create_bmap
from builder.publish.compress import compress_xz, compress_zstd
from builder.publish.imager import ImagerEntry, device_tags, download_url, write_os_list
from builder.publish.manifest import image_manifest, image_packages, write_manifest
from builder.publish.reproducible import make_reproducible, source_date_epoch
from builder.publish.secret_scan import find_secrets
from builder.publish.signing import Signer, release_signer, sign_detached_armoured
from builder.publish.sums import SUMS, write_sums
from builder.render import RenderPlan
from builder.render.platform import role_targets

log = logging.getLogger("clusterbake")

OS_LIST = "os_list.json"


@dataclass(frozen=True)
class ReleaseRequest:
    cluster: Cluster
    key: str                        # fingerprint of the signing key (RELEASE_KEY)
    dist: Path = Path("dist")
    cache: Path = Path()
    offline: bool = False
    fast: bool = False              # xz -1 / zstd -3: for tests and trial runs
    zstd: bool = False              # also write .img.zst
    base_url: str | None = None     # where the files will be downloadable; default: file:// URLs of dist/


@dataclass(frozen=True)
class RoleArtefacts:
    role: str
    files: tuple[str, ...]          # names in dist/
    entry: ImagerEntry


def make_release(req: ReleaseRequest) -> Path:
    """Build and publish every role image of the cluster into req.dist; return req.dist."""
    signer = release_signer(req.key)
    for tool in ("xz", "bmaptool", *(("zstd",) if req.zstd else ())):
        require_tool(tool)
    # Role images only: a container node's template is built with `build --node`.
    job = plan_job(req.cluster, role_targets(req.cluster), secrets=False, cache=req.cache, offline=req.offline)
    epoch = source_date_epoch()
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    dist = req.dist.resolve()
    base_url = req.base_url or dist.as_uri()
    with step(f"Release {req.cluster.name} {date} → {dist}"), staged_release(dist) as work:
        produced = publish_images(job, work, epoch=epoch, date=date, fast=req.fast, zstd=req.zstd, base_url=base_url)
        write_os_list(work / OS_LIST, [p.entry for p in produced])
        names = [name for p in produced for name in p.files] + [OS_LIST]
        with step("SHA256SUMS and its signature"):
            sign_sums(signer, write_sums(work, names))
    log.info("release in %s: %s", dist, ", ".join(sorted(os.listdir(dist))))
    return dist


def sign_sums(signer: Signer, sums: Path) -> Path:
    signature = sums.with_name(f"{SUMS}.asc")
    sign_detached_armoured(signer, sums, signature)
    return signature


def publish_images(job: BuildJob, work: Path, *, epoch: int, date: str, fast: bool, zstd: bool,
                   base_url: str) -> list[RoleArtefacts]:
    """The job's role images (planned without secrets) built by the one build loop, with the release's
    steps inside each open image (reproducible, free of secrets, described by its manifest), then each
    image's files for dist/ in `work`."""
    assert not any(plan.secrets for plan in job.plans), "a release image is planned without secrets"
    raw_dir = work / ".raw"
    built = build_job(replace(job, out_dir=raw_dir),
                      functools.partial(release_steps, cluster=job.cluster, epoch=epoch, date=date))
    return [publish_image(job.cluster, each, raw_dir, work, date=date, fast=fast, zstd=zstd, base_url=base_url)
            for each in built]


def release_stem(cluster: Cluster, plan: RenderPlan, date: str) -> str:
    return f"{cluster.name}-{plan.role}-{date}"


def release_steps(img: OpenImage, plan: RenderPlan, base: Path, *, cluster: Cluster, epoch: int,
                  date: str) -> dict[str, object]:
    """A release's finishing step, inside the built image: reproducible, refused if it holds secrets,
    free blocks discarded; returns the image's manifest (without the sizes and sums of the file)."""
    stem = release_stem(cluster, plan, date)
    with step(f"Release checks of {stem}.img"):
        packages = image_packages(img)
        make_reproducible(img, epoch)
        problems = find_secrets(img)
        if problems:
            raise VerificationError(f"{stem}.img: refusing to publish an image holding secrets: "
                                    + "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""),
                                    hint="release images are built --no-secrets; remove what put these there")
        manifest = image_manifest(img, plan, cluster, base=base, image_name=f"{stem}.img.xz",
                                  release_date=date, source_date_epoch=epoch, packages=packages)
        discard_free_blocks(img.root)
    return manifest


def publish_image(cluster: Cluster, built: BuiltImage[dict[str, object]], raw_dir: Path, work: Path, *, date: str,
                  fast: bool, zstd: bool, base_url: str) -> RoleArtefacts:
    """One built role image's files in `work`: bmap, manifest, xz (and zstd), and its Imager entry."""
    plan, role = built.plan, built.plan.role
    stem = release_stem(cluster, plan, date)
    image = built.path.rename(raw_dir / f"{stem}.img")
    extract_size, extract_sha256 = image.stat().st_size, sha256_file(image)
    manifest = {**built.finished, "image_size": extract_size, "image_sha256": extract_sha256}
    files = [create_bmap(image, work / f"{stem}.img.bmap").name,
             write_manifest(work / f"{stem}.manifest.json", manifest).name]
    compressed = compress_xz(image, work / f"{stem}.img.xz", fast=fast)
    files.append(compressed.name)
    if zstd:
        files.append(compress_zstd(image, work / f"{stem}.img.zst", fast=fast).name)
    image.unlink()
    entry = ImagerEntry(
        name=f"{cluster.name} {role}", description=f"{plan.profile.description or role} "
        f"(clusterbake image of the {cluster.name} cluster; copy munge.key to the boot partition)",
        url=download_url(base_url, compressed.name), release_date=date, extract_size=extract_size,
        extract_sha256=extract_sha256, image_download_size=compressed.stat().st_size,
        image_download_sha256=sha256_file(compressed), devices=device_tags(cluster.nodes_with_role(role)))
    return RoleArtefacts(role, tuple(sorted(files)), entry)


def discard_free_blocks(root: Path) -> None:
    """Punch the filesystem's free blocks out of the image file: smaller xz, fewer mapped blocks to flash."""
    proc = run(["fstrim", root], label="fstrim", check=False)
    if proc.returncode != 0:
        log.warning("fstrim %s failed; the image keeps deleted data in its free blocks (bigger, slower to "
                    "flash): %s", root, proc.stderr.decode(errors="replace").strip())


@contextlib.contextmanager
def staged_release(dist: Path) -> Iterator[Path]:
    """A private directory beside `dist`; on success it replaces `dist` (the old release is removed)."""
    if dist.exists() and not dist.is_dir():
        raise InputError(f"{dist}: exists and is not a directory", hint="give another --dist")
    with atomic_directory(dist) as work:
        yield work
        shutil.rmtree(work / ".raw", ignore_errors=True)

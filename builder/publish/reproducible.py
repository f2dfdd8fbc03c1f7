"""Make a release image's file tree the same from build to build (SOURCE_DATE_EPOCH).

What differed between two compute images built from the same inputs (one with a cold cache,
so the packages were installed twice) is all churn from running package scripts at a given
time, none of it needed on the card:
  - logs of the build itself (apt's history/term logs, dpkg.log, alternatives.log; anything
    under /var/log is removed, the directories stay so services find them);
  - caches rebuilt on first use: ldconfig's aux-cache, apt's pkgcache.bin/srcpkgcache.bin;
  - backups that record the previous state: dpkg's and debconf's *-old, /etc/passwd- etc.;
  - on different days, the day of the last password change in /etc/shadow (useradd and the
    system users package scripts add write today's date): set to SOURCE_DATE_EPOCH's day.
Python's __pycache__ (compiled by postinst scripts) came out identical, so it stays.
The scrub runs on every release image; ordinary builds keep their logs.
"""

from __future__ import annotations

import logging
import os
import stat
import time

from builder.errors import InputError
from builder.image.image_root import ImageRoot

log = logging.getLogger("clusterbake")

# Files (globs in their last component) whose content is a record of when the build ran.
CHURN = (
    "/var/cache/ldconfig/aux-cache",
    "/var/cache/apt/*.bin",
    "/var/cache/debconf/*-old",
    "/var/lib/dpkg/*-old",
    "/etc/*-",
)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/), else now."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return int(time.time())
    if not text.isdigit():
        raise InputError(f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds since 1970",
                         hint="export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)")
    return int(text)


def make_reproducible(img: ImageRoot, epoch: int) -> None:
    removed = 0
    for pattern in CHURN:
        for path, info in img.glob(pattern):
            if stat.S_ISREG(info.st_mode):
                img.remove(path)
                removed += 1
    for path, info in img.walk("/var/log"):
        if stat.S_ISREG(info.st_mode):
            img.remove(path)
            removed += 1
    _pin_shadow_dates(img, epoch // 86400)
    log.info("  removed %d build-time records (logs, caches)", removed)


def _pin_shadow_dates(img: ImageRoot, day: int) -> None:
    """Field 3 of /etc/shadow: days since 1970 of the last password change; made by the build's clock."""
    if not img.exists("/etc/shadow"):
        return
    lines = []
    for line in img.read_file("/etc/shadow").decode().splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            fields[2] = str(day)
        lines.append(":".join(fields))
    img.rewrite("/etc/shadow", ("\n".join(lines) + "\n").encode())

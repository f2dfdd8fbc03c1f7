"""Fetch files over HTTP with timeouts, retries with backoff and resume; copy local ones.

A download goes into a partial file that is kept between runs: the next attempt (or the
next run) asks for the rest with `Range: bytes=N-`. A server that ignores Range and
answers 200 gets the file rewritten from the start. Nothing here decides whether the
bytes are good; the caller verifies before anything is moved into the cache.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TypeVar

import requests
import urllib3

from builder.config.sources import Source
from builder.errors import ClusterbakeError, EnvironmentProblem, InputError, VerificationError
from builder.input_files import kind_of, read_bytes
from builder.progress import progress

log = logging.getLogger("clusterbake.acquire")

T = TypeVar("T")
CHUNK = 1 << 20
CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# Worth another try: the server or a proxy in between is having a bad moment.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class NetworkPolicy:
    """How patient downloads are. Module-level so tests can make it impatient."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # between two bytes, not for the whole file
    attempts: int = 5
    backoff: float = 1.0  # seconds before the 2nd attempt, doubled after each failure
    max_backoff: float = 30.0


POLICY = NetworkPolicy()


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Downloader:
    """Fetches the files of one `fetch_base` call, on one HTTP session."""

    def __init__(self, session: requests.Session, *, offline: bool) -> None:
        self.session = session
        self.offline = offline

    def small(self, source: Source, *, limit: int = 1 << 20) -> bytes:
        """The whole content of a small file (checksum list, signature, key)."""
        if source.path is not None:
            self._refuse_if_offline(source)
            data = _read_local(source, limit)
        else:
            data = self._with_retries(source, lambda: self._get_small(source, limit))
        if len(data) > limit:
            raise InputError(f"{source.where}: is larger than {limit} bytes; expected a small file",
                             hint=f"check {source.setting} in the cluster file")
        return data

    def to_file(self, source: Source, partial: Path) -> bool:
        """Download or copy `source` into `partial`; True if it resumed earlier bytes."""
        self._refuse_if_offline(source)
        partial.parent.mkdir(parents=True, exist_ok=True)
        if source.path is not None:
            _copy_local(source, partial)
            return False
        resumed = partial.exists() and partial.stat().st_size > 0
        self._with_retries(source, lambda: self._get_to_file(source, partial))
        return resumed

    def _refuse_if_offline(self, source: Source) -> None:
        if self.offline:
            raise InputError(f"{source.where}: not in the cache, and --offline forbids fetching it; "
                             "run without --offline", hint="run once without --offline to fetch and verify it")

    def _with_retries(self, source: Source, attempt: Callable[[], T]) -> T:
        self._refuse_if_offline(source)
        delay = POLICY.backoff
        for number in range(1, POLICY.attempts + 1):
            try:
                return attempt()
            except _Retry as exc:
                if number == POLICY.attempts:
                    raise _gave_up(source, exc, number) from None
                log.warning("    %s: %s; retrying in %.0fs (attempt %d of %d)", source.where, exc.reason, delay,
                            number + 1, POLICY.attempts)
                time.sleep(delay)
                delay = min(delay * 2, POLICY.max_backoff)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request(self, source: Source, headers: dict[str, str]) -> requests.Response:
        assert source.url is not None
        try:
            response = self.session.get(source.url, headers=headers, stream=True,
                                        timeout=(POLICY.connect_timeout, POLICY.read_timeout))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(_reason(exc)) from exc
        except requests.RequestException as exc:  # e.g. too many redirects: no point in trying again
            raise InputError(f"{source.where}: {exc}", hint=f"check {source.setting} in the cluster file") from None
        if response.status_code in RETRY_STATUSES:
            response.close()
            raise _Retry(f"server answered HTTP {_status_text(response.status_code)}", status=response.status_code)
        return response

    def _get_small(self, source: Source, limit: int) -> bytes:
        with self._request(source, {}) as response:
            _fail_unless_ok(source, response)
            data = bytearray()
            try:
                for chunk in response.raw.stream(1 << 16, decode_content=False):
                    data += chunk
                    if len(data) > limit:
                        break
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _Retry(_reason(exc)) from exc
            return bytes(data)

    def _get_to_file(self, source: Source, partial: Path) -> None:
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._request(source, headers) as response:
            if response.status_code == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE and have:
                if response.headers.get("Content-Range") == f"bytes */{have}":
                    return  # an earlier run got every byte but stopped before verifying them
                # The partial is longer than the file: it cannot be a prefix of it.
                partial.unlink()
                raise _Retry("server refused to resume (HTTP 416); starting over")
            _fail_unless_ok(source, response)
            if response.status_code == HTTPStatus.PARTIAL_CONTENT:
                start, total = _content_range(response)
                if start != have:
                    partial.unlink()
                    raise _Retry(f"server resumed at byte {start}, not {have}; starting over")
                log.info("    resuming %s at %d MiB", source.name, have >> 20)
                mode = "ab"
            else:
                if have:
                    log.info("    %s: the server ignored the Range request; downloading from the start",
                             source.name)
                start, mode = 0, "wb"
                total = _content_length(response)
            with partial.open(mode) as out, progress(total, f"download {source.name}", initial=start) as bar:
                try:
                    for chunk in response.raw.stream(CHUNK, decode_content=False):
                        out.write(chunk)
                        bar.update(len(chunk))
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                        raise EnvironmentProblem(f"{partial.parent}: no space left on the device",
                                                 hint="free some space or set CLUSTERBAKE_CACHE") from exc
                    raise _Retry(f"download interrupted: {_reason(exc)}") from exc
        got = partial.stat().st_size
        if total is not None and got != total:
            raise _Retry(f"download ended early at {got} of {total} bytes")


def _fail_unless_ok(source: Source, response: requests.Response) -> None:
    """Turn a final (not retried) HTTP error into the error for the setting that named the file."""
    if response.status_code in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        return
    status = _status_text(response.status_code)
    if source.setting.endswith("signature_url"):
        missing = "not found" if response.status_code in (404, 410) else "cannot be fetched"
        raise VerificationError(f"{source.where}: signature {missing} (HTTP {status}); the image cannot be "
                                "verified without it",
                                hint=f"check {source.setting}: it must name the .sig file beside the image")
    raise InputError(f"{source.where}: the server answered HTTP {status}",
                     hint=f"check {source.setting} in the cluster file")


def _gave_up(source: Source, exc: _Retry, attempts: int) -> ClusterbakeError:
    if exc.status is not None:
        return InputError(f"{source.where}: {exc.reason} (gave up after {attempts} attempts)",
                          hint=f"the server is failing: try again later, or point {source.setting} at a mirror")
    return EnvironmentProblem(
        f"{source.where}: cannot download: {exc.reason} (gave up after {attempts} attempts)",
        hint="check the network connection (and proxy settings); run again to resume; "
             "--offline uses only what is cached")


def _content_range(response: requests.Response) -> tuple[int, int | None]:
    match = CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
    if match is None:
        raise _Retry(f"server answered 206 without a valid Content-Range ({response.headers.get('Content-Range')!r})")
    size = match.group(3)
    return int(match.group(1)), None if size == "*" else int(size)


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _status_text(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _reason(exc: BaseException) -> str:
    """A short cause ("connection refused", "timed out") instead of urllib3's nested repr."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "reason", None) or nested
    # The most specific cause wins: urllib3 files "connection refused" under a timeout class.
    for cause in chain:
        if isinstance(cause, urllib3.exceptions.NameResolutionError):
            return "host name not found"
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
            return cause.strerror.lower()
    for cause in chain:
        if isinstance(cause, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
            return "timed out"
    for cause in chain:
        if isinstance(cause, urllib3.exceptions.ProtocolError | requests.exceptions.ChunkedEncodingError):
            return "connection closed before the end of the file"
    return str(exc) or type(exc).__name__


def _read_local(source: Source, limit: int) -> bytes:
    """A small local file: regular, at most `limit` bytes (a FIFO or /dev/zero is refused, not read)."""
    assert source.path is not None
    if not os.path.lexists(source.path):
        raise _missing_local(source)
    return read_bytes(source.path, source.where, limit, hint=f"check {source.setting} in the cluster file")


def _copy_local(source: Source, partial: Path) -> None:
    assert source.path is not None
    try:
        mode = source.path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{source.where}: is {kind_of(mode)}, not a regular file",
                             hint=f"check {source.setting} in the cluster file")
        src = source.path.open("rb")
    except FileNotFoundError:
        raise _missing_local(source) from None
    except OSError as exc:
        raise InputError(f"{source.where}: cannot read: {exc.strerror}") from None
    with src, partial.open("wb") as out, progress(source.path.stat().st_size, f"copy {source.name}") as bar:
        while chunk := src.read(CHUNK):
            out.write(chunk)
            bar.update(len(chunk))


def _missing_local(source: Source) -> ClusterbakeError:
    if source.setting.endswith("signature_url"):
        return VerificationError(f"{source.where}: signature not found; the image cannot be verified without it",
                                 hint=f"check {source.setting}: it must name the .sig file beside the image")
    return InputError(f"{source.where}: no such file",
                      hint=f"check {source.setting}; relative paths are relative to the cluster file")


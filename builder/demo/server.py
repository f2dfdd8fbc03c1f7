"""A static file server on 127.0.0.1 with knobs to make it misbehave on purpose.

The acquisition code is tested against real HTTP: this server answers GET and HEAD,
honours single `Range: bytes=N-` requests, and can be told to answer an error status,
cut a body short or ignore Range, so each failure a real mirror can produce is
reproducible in a test.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("clusterbake.demo.server")

RANGE_RE = re.compile(r"^bytes=(\d+)-$")
CHUNK = 1 << 16


class StaticServer:
    """What a test sees of the server: its address, its fault knobs and its request log."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root.resolve()
        self.base_url = base_url
        # Path name (as in url(name)) -> HTTP status to answer instead of the file.
        self.fail_status: dict[str, int] = {}
        # Path name -> close the connection after this many body bytes; applies once.
        self.cut_after: dict[str, int] = {}
        # Answer 200 and the whole body even when the client asked for a range.
        self.ignore_range = False
        # (method, path name) of every request, in arrival order.
        self.requests: list[tuple[str, str]] = []
        # (path name, Range header) of every request that carried a Range header.
        self.range_requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def url(self, name: str) -> str:
        return f"{self.base_url}/{urllib.parse.quote(name)}"

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()
            self.range_requests.clear()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _answer(self, *, send_body: bool) -> None:
        state = self.server.state
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        range_header = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.command, name))
            if range_header is not None:
                state.range_requests.append((name, range_header))
            status = state.fail_status.get(name)
            cut = state.cut_after.pop(name, None) if send_body else None
        if status is not None:
            self._send_empty(status)
            return
        file = (state.root / name).resolve()
        if not file.is_relative_to(state.root) or not file.is_file():
            self._send_empty(HTTPStatus.NOT_FOUND)
            return
        size = file.stat().st_size
        start = 0
        match = RANGE_RE.match(range_header or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= size:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "none" if state.ignore_range else "bytes")
        self.end_headers()
        if not send_body:
            return
        with file.open("rb") as body:
            body.seek(start)
            if cut is None:
                shutil.copyfileobj(body, self.wfile, CHUNK)
                return
            self.wfile.write(body.read(cut))
            self.wfile.flush()
            # The client was promised more bytes: dropping the connection now is
            # exactly what a mirror going away mid-download looks like.
            self.close_connection = True

    def _send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A test that ends mid-download must not wait for the handler thread.
    block_on_close = False

    def __init__(self, state_root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        host, port = self.server_address[:2]
        self.state = StaticServer(state_root, f"http://{host!s}:{port}")


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[StaticServer]:
    """Serve `root` on an ephemeral port of 127.0.0.1 until the block ends."""
    with contextlib.ExitStack() as stack:
        server = _Server(Path(root))
        stack.callback(server.server_close)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"serve {root}", daemon=True)
        thread.start()
        stack.callback(thread.join)
        stack.callback(server.shutdown)
        log.debug("serving %s at %s", root, server.state.base_url)
        yield server.state

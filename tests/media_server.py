"""A real HTTP server on 127.0.0.1 for tests of download code: serves a folder, plus a slow path.

`serve(folder)` yields the base URL of a `tests.loopback` server bound to a free
loopback port. Files under `folder` are served as they are (missing ones give
404); `/slow/<name>` sends `<name>` a trickle at a time, for download timeouts;
`/endless/<name>` sends a video that never ends, chunked at about 5 MB/s with no
Content-Length, for size caps that cannot trust the headers.
It stands in for the internet in tests; it is not a mock of any library.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import time
from collections.abc import Iterator
from pathlib import Path

from tests.loopback import LoopbackServer

SLOW_CHUNK = 512
SLOW_PAUSE_S = 0.25
ENDLESS_CHUNK = 64 * 1024
ENDLESS_PAUSE_S = ENDLESS_CHUNK / (5 * 1024 * 1024)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith("/slow/"):
            self._send_slowly(Path(self.directory) / self.path.removeprefix("/slow/"))
        elif self.path.startswith("/endless/"):
            self._send_endlessly()
        else:
            super().do_GET()

    def _send_slowly(self, path: Path) -> None:
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            for start in range(0, len(data), SLOW_CHUNK):
                self.wfile.write(data[start:start + SLOW_CHUNK])
                self.wfile.flush()
                time.sleep(SLOW_PAUSE_S)

    def _send_endlessly(self) -> None:
        self.protocol_version = "HTTP/1.1"  # chunked transfer needs it; the connection still closes after
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = f"{ENDLESS_CHUNK:x}\r\n".encode() + bytes(ENDLESS_CHUNK) + b"\r\n"
        with contextlib.suppress(OSError):
            while True:  # until the client hangs up
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(ENDLESS_PAUSE_S)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class MediaServer(LoopbackServer):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__()

    def _handler(self):
        return functools.partial(_Handler, directory=str(self.folder))


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on a free loopback port for the duration of the block; yields 'http://127.0.0.1:PORT'."""
    with MediaServer(folder) as server:
        yield server.root

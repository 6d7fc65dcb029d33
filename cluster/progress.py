"""Live progress of shorts running on other nodes: their supervisors' observer events, streamed to the driver's display.

The driver listens on its own node's address (port chosen by the system) and feeds every event it hears
into the same display `--jobs` uses (a live table on a terminal, plain lines otherwise). Each task
connects, proves it belongs to this batch with the batch's secret token, then sends each `RunEvent`
its supervisor emits as it is (msgspec JSON, one a line); samples are thinned to a few a second. Progress is best
effort: a task that cannot connect, or loses the connection, prints its lines to its stderr instead
(Ray forwards them to the driver), and the run itself never depends on it. Not responsible for the
runs, nor for what the display shows.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import sys
import threading
import time
from collections.abc import Iterator

import msgspec

from aishorts.runner.display import PlainDisplay
from aishorts.runner.events import Observer, RunEvent, StageFinished, StageSample

SAMPLE_EVERY_S = 0.25
"""At most this often per stage a memory sample travels to the driver."""
MAX_LINE = 1 << 20


@contextlib.contextmanager
def progress_server(host: str, token: str, observer: Observer) -> Iterator[str]:
    """Listen for the tasks' progress on `host` for the block; yields the `host:port` tasks connect to."""
    listener = socket.create_server((host, 0), backlog=64)
    listener.settimeout(0.2)
    stop = threading.Event()
    acceptor = threading.Thread(target=_accept, args=(listener, token, observer, stop), daemon=True,
                                name="cluster-progress")
    acceptor.start()
    try:
        yield f"{host}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join()
        listener.close()


def _accept(listener: socket.socket, token: str, observer: Observer, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        threading.Thread(target=_serve, args=(conn, token, observer, stop), daemon=True).start()


def _serve(conn: socket.socket, token: str, observer: Observer, stop: threading.Event) -> None:
    decoder = msgspec.json.Decoder(RunEvent)
    with conn, conn.makefile("rb") as stream:
        conn.settimeout(None)
        first = stream.readline(MAX_LINE).strip()
        if not hmac.compare_digest(first, token.encode()):
            return
        for line in stream:
            if stop.is_set():
                return
            try:
                event = decoder.decode(line)
            except msgspec.DecodeError:
                return
            observer(event)


class RemoteObserver:
    """A task's observer: every event to the driver while the connection holds, else as lines on stderr."""

    def __init__(self, address: str | None, token: str) -> None:
        self._lock = threading.Lock()
        self._fallback = PlainDisplay(sys.stderr)
        self._sock: socket.socket | None = None
        self._last_sample: dict[str, float] = {}
        self._encoder = msgspec.json.Encoder()
        if address:
            host, _, port = address.rpartition(":")
            try:
                self._sock = socket.create_connection((host, int(port)), timeout=5)
                self._sock.sendall(token.encode() + b"\n")
            except OSError:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, event: RunEvent) -> bool:
        with self._lock:
            if self._sock is None:
                return False
            try:
                self._sock.sendall(self._encoder.encode(event) + b"\n")
                return True
            except OSError:
                self._sock.close()
                self._sock = None
                return False

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, StageSample):
            now = time.monotonic()
            if now - self._last_sample.get(event.stage, 0.0) < SAMPLE_EVERY_S:
                return
            self._last_sample[event.stage] = now
        elif isinstance(event, StageFinished):  # the display needs the figures, not the curve
            event = msgspec.structs.replace(event, report=msgspec.structs.replace(event.report, timeline=[]))
        if not self._send(event):
            self._fallback(event)  # plain lines (samples show none)

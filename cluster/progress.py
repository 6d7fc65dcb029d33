"""Live progress of shorts running on other nodes: their supervisors' observer events, streamed to the driver's display.

The driver listens on its own node's address (port chosen by the system) and feeds every event it hears
into the same display `--jobs` uses (a live table on a terminal, plain lines otherwise). Each task
connects, proves it belongs to this batch with the batch's secret token, then sends one `Progress`
message (JSON, one a line) per observer call; samples are thinned to a few a second. Progress is best
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
from typing import Literal

import msgspec

from ipc.messages import ProgressEvent
from runner.display import PlainDisplay
from runner.report import StageReport
from runner.run import Observer

SAMPLE_EVERY_S = 0.25
"""At most this often per stage a memory sample travels to the driver."""
MAX_LINE = 1 << 20


class Progress(msgspec.Struct, kw_only=True):
    kind: Literal["waiting", "started", "sample", "event", "warning", "finished"]
    label: str
    stage: str
    ceiling: int = 0
    rss: int = 0
    event: ProgressEvent | None = None
    message: str = ""
    report: StageReport | None = None


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
    decoder = msgspec.json.Decoder(Progress)
    with conn, conn.makefile("rb") as stream:
        conn.settimeout(None)
        first = stream.readline(MAX_LINE).strip()
        if not hmac.compare_digest(first, token.encode()):
            return
        for line in stream:
            if stop.is_set():
                return
            try:
                _dispatch(observer, decoder.decode(line))
            except msgspec.DecodeError:
                return


def _dispatch(observer: Observer, message: Progress) -> None:
    label, stage = message.label, message.stage
    if message.kind == "waiting":
        observer.stage_waiting(label, stage, message.ceiling)
    elif message.kind == "started":
        observer.stage_started(label, stage, message.ceiling)
    elif message.kind == "sample":
        observer.stage_sample(label, stage, message.rss)
    elif message.kind == "event" and message.event is not None:
        observer.stage_event(label, stage, message.event)
    elif message.kind == "warning":
        observer.stage_warning(label, stage, message.message)
    elif message.kind == "finished" and message.report is not None:
        observer.stage_finished(label, message.report)


class RemoteObserver(Observer):
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

    def _send(self, message: Progress) -> bool:
        with self._lock:
            if self._sock is None:
                return False
            try:
                self._sock.sendall(self._encoder.encode(message) + b"\n")
                return True
            except OSError:
                self._sock.close()
                self._sock = None
                return False

    def stage_waiting(self, label: str, stage: str, ceiling: int) -> None:
        if not self._send(Progress(kind="waiting", label=label, stage=stage, ceiling=ceiling)):
            self._fallback.stage_waiting(label, stage, ceiling)

    def stage_started(self, label: str, stage: str, ceiling: int) -> None:
        if not self._send(Progress(kind="started", label=label, stage=stage, ceiling=ceiling)):
            self._fallback.stage_started(label, stage, ceiling)

    def stage_sample(self, label: str, stage: str, rss: int) -> None:
        now = time.monotonic()
        if now - self._last_sample.get(stage, 0.0) >= SAMPLE_EVERY_S:
            self._last_sample[stage] = now
            self._send(Progress(kind="sample", label=label, stage=stage, rss=rss))

    def stage_event(self, label: str, stage: str, event: ProgressEvent) -> None:
        if not self._send(Progress(kind="event", label=label, stage=stage, event=event)):
            self._fallback.stage_event(label, stage, event)

    def stage_warning(self, label: str, stage: str, message: str) -> None:
        if not self._send(Progress(kind="warning", label=label, stage=stage, message=message)):
            self._fallback.stage_warning(label, stage, message)

    def stage_finished(self, label: str, report: StageReport) -> None:
        slim = msgspec.structs.replace(report, timeline=[])  # the display needs the figures, not the curve
        if not self._send(Progress(kind="finished", label=label, stage=report.name, report=slim)):
            self._fallback.stage_finished(label, report)

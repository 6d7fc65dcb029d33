"""The memory of a whole run: the parent's own RSS plus every running stage tree, sampled together.

Watchdogs report each tree's latest RSS here; a sampler thread adds the
parent's own RSS every poll interval and keeps the peak and a timeline.
Meters can be chained so a batch sees the sum of all its runs.
"""

from __future__ import annotations

import threading
import time

import psutil


class MemoryMeter:
    def __init__(self, poll_s: float, parent: MemoryMeter | None = None) -> None:
        self.poll_s = poll_s
        self._parent = parent
        self._current: dict[str, int] = {}
        self._lock = threading.Lock()
        self._self = psutil.Process()
        self._start = time.monotonic()
        self.peak = 0
        self.parent_peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set(self, key: str, rss: int) -> None:
        with self._lock:
            self._current[key] = rss
        if self._parent is not None:
            self._parent.set(f"{id(self)}:{key}", rss)

    def clear(self, key: str) -> None:
        with self._lock:
            self._current.pop(key, None)
        if self._parent is not None:
            self._parent.clear(f"{id(self)}:{key}")

    def sample(self) -> int:
        own = self._self.memory_info().rss
        with self._lock:
            total = own + sum(self._current.values())
        self.parent_peak = max(self.parent_peak, own)
        self.peak = max(self.peak, total)
        self.samples.append((time.monotonic() - self._start, total))
        return total

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def __enter__(self) -> MemoryMeter:
        self._thread = threading.Thread(target=self._loop, name="memory-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.sample()

"""The server's queue of jobs and the worker threads that take from it.

Responsible for: handing each queued job id to `take(job_id)` on one of `count` threads, in the order queued, and
stopping: no job is taken once `close()` is called, and `join()` waits for the threads. Not for: what a job is or
whether it may still run (`serve.jobs` decides in `take`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

POLL_S = 0.2


class WorkerPool:
    def __init__(self, take: Callable[[str], None]) -> None:
        self._take = take
        self._queue: queue.Queue[str] = queue.Queue()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, count: int) -> None:
        for index in range(count):
            thread = threading.Thread(target=self._work, name=f"serve-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def put(self, job_id: str) -> None:
        self._queue.put(job_id)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Take no more jobs; those queued stay queued (on disk, for the next server)."""
        self._closed.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while not self._closed.is_set():
            try:
                job_id = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self._take(job_id)

"""Admission control: stage trees start only when their ceiling fits in what --max-ram leaves.

Each running stage holds a reservation of its effective ceiling until it ends,
so the sum of the ceilings of everything running, plus the parent's reserve,
never exceeds the budget. A pipeline may run several stages at once (the stage
graph), but a stage reserves only once it may start and holds nothing while it
waits, and no ceiling exceeds the whole budget, so nothing waits on a waiter
and every waiting stage gets its turn once running ones end. Without --max-ram
nothing waits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class MemoryBudget:
    def __init__(self, total: int | None) -> None:
        self.total = total
        self._free = total
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, amount: int, cancel: threading.Event, on_wait=lambda: None) -> Iterator[float]:
        """Hold `amount` bytes while the block runs; yields how long it waited for them."""
        if self.total is None:
            yield 0.0
            return
        amount = min(amount, self.total)
        start = time.monotonic()
        with self._cond:
            if self._free < amount:
                on_wait()
            while self._free < amount and not cancel.is_set():
                self._cond.wait(timeout=0.1)
            self._free -= amount
        try:
            yield time.monotonic() - start
        finally:
            with self._cond:
                self._free += amount
                self._cond.notify_all()

"""Nothing a stage starts outlives the supervisor: the stage's tree dies with it, whatever killed it.

The stage process makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`):
every descendant orphaned on the way (an ffmpeg whose parent exited, a yt-dlp
that called `setsid()` and forked into the background) is re-parented to the
stage instead of to init, so it stays one of the stage's descendants and can
always be found. When the supervisor dies, by any signal including SIGKILL,
the stage learns it twice over: the kernel sends it `SIGUSR1` (its parent-death
signal) and a watcher thread sees its parent pid change within `POLL_S`.
Either way every descendant gets SIGKILL, then the stage exits.

Not covered: a descendant that double-forks *and* is re-parented before the
stage becomes a subreaper (nothing runs before this module's `hold` in a
stage), and processes started through another service (a D-Bus-activated
program) that are not descendants at all. The watchdog in the supervisor kills
the same trees when the supervisor is alive; this module is for when it is not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.05
ORPHANED_EXIT_CODE = 137


def hold() -> None:
    """Tie this process's whole tree to its parent's life; call first thing in a stage process."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGUSR1, lambda signum, frame: _end_tree())
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
    if os.getppid() != parent or parent == 1:  # the supervisor died before the signal was armed
        _end_tree()
    threading.Thread(target=_watch_parent, args=(parent,), name="lifeline", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    _end_tree()


def _end_tree() -> None:
    """SIGKILL every descendant (re-parented orphans included), then leave."""
    for _ in range(3):  # a descendant may start another while we kill
        descendants = _descendants(os.getpid())
        if not descendants:
            break
        for pid in descendants:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    os._exit(ORPHANED_EXIT_CODE)


def _descendants(root: int) -> list[int]:
    """Every live descendant of `root`, from /proc (no library needed when time is short)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found

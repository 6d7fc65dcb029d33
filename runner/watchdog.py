"""Supervising one stage process: spawn it alone, watch its tree's RSS, kill it at its ceiling.

The stage starts as a fresh interpreter in its own session (so its process
group holds every descendant that does not escape on purpose), with its
`oom_score_adj` raised so the kernel prefers it over the parent. Every
`poll_s` the RSS of the whole tree is summed; above the warning fraction a
warning is recorded once; above the ceiling the group gets SIGTERM, then
SIGKILL after the grace. The child is reaped with `wait4`, whose `ru_maxrss`
is a floor for the true peak between samples.

Failure modes this module names: `oom` (killed here for crossing the ceiling,
or killed by SIGKILL that was not ours: most likely the kernel's OOM killer),
`interrupted` (the caller set `cancel`), `failed` (non-zero exit). It does not
decide what a stage is, whether to run it, or how to report it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import psutil

from aishorts.ipc.files import open_new_file
from aishorts.ipc.messages import ProgressEvent, StageFailure, progress_decoder
from aishorts.runner.status import Ending


@dataclass
class WatchSettings:
    ceiling: int
    poll_s: float
    warn_fraction: float
    kill_grace_s: float


@dataclass
class ProcessOutcome:
    status: Ending
    exit_code: int | None
    signal: int | None
    sampled_peak: int
    ru_maxrss: int
    wall_s: float
    cpu_s: float
    samples: list[tuple[float, int]]
    crossed_at: float | None = None
    """Seconds from the start when the tree was first seen above its ceiling."""
    crossed_rss: int | None = None
    gone_after_crossing_s: float | None = None
    killed_by_os: bool = False
    survivors: list[int] = field(default_factory=list)
    """Pids of the tree still alive 2 s after it was killed (none expected; reported if ever seen)."""
    message: str = ""
    """Why it failed, when known without reading its log: the stage said so (`StageFailure`), or it ran in the
    supervisor's own process."""
    failure_at: str = ""
    """For a crash the stage reported: where it was raised (`file:line in function`)."""

    @property
    def peak(self) -> int:
        return max(self.sampled_peak, self.ru_maxrss)


class TreeSampler:
    """RSS of a process and all its descendants, found incrementally.

    psutil's `children(recursive=True)` reads every process's stat file on
    each call (about 9 ms with 100 processes here: 18% of a core at 20 Hz).
    Instead only pids that appeared since the last sample are examined, once
    each: a new pid whose parent is a member becomes a member. Members stay
    members when their parent dies and they are re-parented, so an orphaned
    ffmpeg is still counted and still killed.
    """

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._members: dict[int, psutil.Process] = {root_pid: psutil.Process(root_pid)}
        self._seen: set[int] = set(psutil.pids())

    def _discover(self) -> None:
        pids = set(psutil.pids())
        new = pids - self._seen
        self._seen = pids
        while new:
            joined = set()
            for pid in new:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(pid)
                    if proc.ppid() in self._members:
                        self._members[pid] = proc
                        joined.add(pid)
            if not joined:
                break
            new -= joined  # a grandchild may have appeared before its parent was known

    def rss(self) -> int:
        self._discover()
        total = 0
        for pid, proc in list(self._members.items()):
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                if pid != self.root_pid:
                    del self._members[pid]
            except psutil.Error:
                pass
        return total

    def known_alive(self) -> list[psutil.Process]:
        """Every descendant ever seen that still runs (escapees from the group included)."""
        alive = []
        for proc in list(self._members.values()):
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        return alive


def signal_tree(pgid: int, sampler: TreeSampler | None, sig: int) -> None:
    """Send `sig` to the stage's process group and to any known descendant outside it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    if sampler is not None:
        for proc in sampler.known_alive():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prefer_as_oom_victim(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/oom_score_adj").write_text("1000")


def _read_progress(fd: int, on_event: Callable[[ProgressEvent], None], failures: list[StageFailure]) -> None:
    """Each progress event to `on_event`; the stage's own account of its failure into `failures`."""
    with os.fdopen(fd, "rb") as pipe:
        for line in pipe:
            try:
                message = progress_decoder.decode(line)
            except msgspec.DecodeError:
                continue  # a stage's garbage never reaches the display
            if isinstance(message, StageFailure):
                failures.append(message)
                continue
            with contextlib.suppress(Exception):
                on_event(message)


def supervise(
    argv: list[str],
    settings: WatchSettings,
    log_path: Path,
    cancel: threading.Event,
    on_sample: Callable[[int], None] = lambda rss: None,
    on_event: Callable[[ProgressEvent], None] = lambda event: None,
    on_warning: Callable[[str], None] = lambda message: None,
    env: dict[str, str] | None = None,
    progress_pipe: tuple[int, int] | None = None,
) -> ProcessOutcome:
    """Run `argv` under `settings` until it exits, is killed at its ceiling, or `cancel` is set.

    `progress_pipe` is an `os.pipe()` whose write end the child inherits and
    whose read end delivers its progress events; both ends are closed here.
    """
    read_fd, write_fd = progress_pipe if progress_pipe is not None else os.pipe()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(log_path):  # the previous attempt's log stays readable, but its errors are not this one's
        log_path.replace(log_path.with_suffix(".previous.log"))
    start = time.monotonic()
    with open_new_file(log_path) as log:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=(write_fd,), env=env, close_fds=True,
            )
        finally:
            os.close(write_fd)
    _prefer_as_oom_victim(proc.pid)
    failures: list[StageFailure] = []
    reader = threading.Thread(target=_read_progress, args=(read_fd, on_event, failures), daemon=True)
    reader.start()
    try:
        outcome = _watch(proc, settings, start, cancel, on_sample, on_warning)
    finally:
        if proc.returncode is None:  # the watch loop itself failed: never leave the tree behind
            signal_tree(proc.pid, None, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
    reader.join(timeout=2)
    if failures and outcome.status == "failed":  # said before it exited: no need to read its log
        outcome.message, outcome.failure_at = failures[-1].reason, failures[-1].where
    return outcome


@dataclass
class _Kill:
    """The watch loop's decision to stop a tree, and how far the stopping has gone."""

    reason: Ending
    decided_at: float
    killed: bool = False


def _watch(
    proc: subprocess.Popen,
    settings: WatchSettings,
    start: float,
    cancel: threading.Event,
    on_sample: Callable[[int], None],
    on_warning: Callable[[str], None],
) -> ProcessOutcome:
    pgid = proc.pid
    try:
        sampler: TreeSampler | None = TreeSampler(proc.pid)
    except psutil.Error:
        sampler = None
    outcome = ProcessOutcome(status="done", exit_code=None, signal=None, sampled_peak=0, ru_maxrss=0,
                             wall_s=0.0, cpu_s=0.0, samples=[])
    kill: _Kill | None = None
    warned = False
    warn_at = settings.warn_fraction * settings.ceiling
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        now = time.monotonic()
        if pid:
            break
        rss = sampler.rss() if sampler else 0
        outcome.samples.append((now - start, rss))
        outcome.sampled_peak = max(outcome.sampled_peak, rss)
        on_sample(rss)
        if rss > warn_at and not warned:
            warned = True
            on_warning(f"at {rss / settings.ceiling:.0%} of its ceiling")
        if kill is None:
            if rss > settings.ceiling:
                kill = _Kill("oom", now)
                outcome.crossed_at, outcome.crossed_rss = now - start, rss
            elif cancel.is_set():
                kill = _Kill("interrupted", now)
            if kill is not None:
                signal_tree(pgid, sampler, signal.SIGTERM)
        elif not kill.killed and now - kill.decided_at >= settings.kill_grace_s:
            kill.killed = True
            signal_tree(pgid, sampler, signal.SIGKILL)
        time.sleep(settings.poll_s if kill is None else min(settings.poll_s, 0.01))
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Whatever the leader left behind in its group (a background ffmpeg) goes too.
    if group_alive(pgid) or (sampler and sampler.known_alive()):
        signal_tree(pgid, sampler, signal.SIGKILL)
    gone_at = time.monotonic()
    outcome.survivors = _wait_gone(pgid, sampler)
    outcome.wall_s = gone_at - start
    if outcome.crossed_at is not None:
        outcome.gone_after_crossing_s = gone_at - start - outcome.crossed_at
    outcome.ru_maxrss = rusage.ru_maxrss * 1024
    outcome.cpu_s = rusage.ru_utime + rusage.ru_stime
    _judge(outcome, proc.returncode, kill)
    return outcome


def _judge(outcome: ProcessOutcome, returncode: int, kill: _Kill | None) -> None:
    """The verdict: our own kill's reason, else the exit status (a SIGKILL we did not send is the OS's OOM killer)."""
    outcome.exit_code = returncode
    outcome.signal = -returncode if returncode < 0 else None
    outcome.killed_by_os = outcome.signal == signal.SIGKILL and kill is None
    if kill is not None:
        outcome.status = kill.reason
    elif returncode == 0:
        outcome.status = "done"
    else:
        outcome.status = "oom" if outcome.killed_by_os else "failed"


def _wait_gone(pgid: int, sampler: TreeSampler | None, timeout: float = 2.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = sampler.known_alive() if sampler else []
        if not group_alive(pgid) and not alive:
            return []
        time.sleep(0.01)
    return [p.pid for p in (sampler.known_alive() if sampler else [])]

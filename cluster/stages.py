"""`--cluster-unit stage`: each stage of each short its own Ray task, asking for that stage's own ceiling.

The shorts' supervisors run on the driver (one thread each, the usual `runner.run` loop: resume, stamps,
reports); what changes is the executor: instead of starting the stage here, `ClusterStageExecutor`
submits it as a Ray task, whose worker starts the stage as its own process under the same watchdog
(`runner.run.execute_in_child`) on whichever node Ray chose, and returns how it ended. A short's light
stages then no longer hold its heaviest stage's memory, and its stages may run on different nodes, so the
run directories must be on a filesystem every node mounts at the same path; a node that cannot see them
refuses the stage with a message that says so. Not responsible for planning, the batch or its report
(`cluster.driver`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec

from aishorts.cluster.task import MAX_RETRIES, PROBE_NAME, lost_worker_words, this_node
from aishorts.ipc.messages import StageCall
from aishorts.runner.console import interrupt_handling
from aishorts.runner.events import Listener, Sampled, StageNews
from aishorts.runner.run import execute_in_child
from aishorts.runner.watchdog import ProcessOutcome, WatchSettings


class StageJob(msgspec.Struct, kw_only=True):
    call: StageCall
    settings: WatchSettings
    log_path: str
    batch_dir: str
    probe_token: str


class StageResult(msgspec.Struct, kw_only=True):
    node: str
    outcome: ProcessOutcome
    news: list[StageNews] = []
    """The stage's own events and the watchdog's warnings, in the order they came (its samples stay on its node)."""


class NotShared(Exception):
    """This node does not see the driver's batch directory: a stage cannot run here."""


def run_stage(job_bytes: bytes) -> bytes:
    """The Ray task: one stage in its own process under its watchdog, on this node, in the shared run directory."""
    job = msgspec.json.decode(job_bytes, type=StageJob)
    node = this_node()
    try:
        shared = (Path(job.batch_dir) / PROBE_NAME).read_text() == job.probe_token
    except OSError:
        shared = False
    if not shared:
        raise NotShared(f"node {node} does not see {job.batch_dir}: --cluster-unit stage needs the batch directory"
                        " on a filesystem every node mounts at the same path (or use the default --cluster-unit short)")
    news: list[StageNews] = []

    def keep(told: StageNews) -> None:
        if not isinstance(told, Sampled):
            news.append(told)

    with interrupt_handling() as cancel:  # Ray's cancel arrives as SIGINT: the stage tree is killed, cleanly
        outcome = execute_in_child(job.call, job.settings, Path(job.log_path), cancel, keep)
    return msgspec.msgpack.encode(StageResult(node=node, outcome=outcome, news=news))


class ClusterStageExecutor:
    """A `runner.run.StageExecutor` running each stage as a Ray task that asks for its ceiling plus a reserve."""

    def __init__(self, ray, batch_dir: Path, probe_token: str, reserve: int) -> None:
        self.ray = ray
        self.remote = ray.remote(run_stage)
        self.batch_dir = str(batch_dir.resolve())
        self.probe_token = probe_token
        self.reserve = reserve
        self.placed: dict[str, list[str]] = {}
        """Run directory -> `stage@node` for each stage that ran, for batch.json."""
        self._lock = threading.Lock()

    def __call__(self, call: StageCall, settings: WatchSettings, log_path: Path, cancel: threading.Event,
                 tell: Listener) -> ProcessOutcome:
        job = StageJob(call=call, settings=settings, log_path=str(log_path.resolve()), batch_dir=self.batch_dir,
                       probe_token=self.probe_token)
        ref = self.remote.options(
            memory=settings.ceiling + self.reserve, num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False,
            name=f"aishorts-{Path(call.run_dir).name}-{call.stage}",
        ).remote(msgspec.json.encode(job))
        cancelled = False
        while not self.ray.wait([ref], timeout=0.2)[0]:
            if cancel.is_set() and not cancelled:
                self.ray.cancel(ref)
                cancelled = True
        try:
            result = msgspec.msgpack.decode(self.ray.get(ref), type=StageResult)
        except self.ray.exceptions.TaskCancelledError:
            return _ended("interrupted", "cancelled before it started")
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            return _ended("failed", str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)
        except self.ray.exceptions.RayError as exc:  # its node's memory (not its ceiling) ran out, or its worker died
            monitor = isinstance(exc, self.ray.exceptions.OutOfMemoryError)
            return _ended("failed", lost_worker_words(exc, memory_monitor=monitor))
        for told in result.news:
            tell(told)
        tell(Sampled(result.outcome.peak))  # the display shows its peak; its live curve stayed on its node
        with self._lock:
            self.placed.setdefault(call.run_dir, []).append(f"{call.stage}@{result.node}")
        return result.outcome


def _ended(status: str, message: str) -> ProcessOutcome:
    return ProcessOutcome(status=status, exit_code=None, signal=None, sampled_peak=0, ru_maxrss=0, wall_s=0.0,
                          cpu_s=0.0, samples=[], message=message)

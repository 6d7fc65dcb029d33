"""One short as one Ray task: the runner's own supervisor, run inside a Ray worker on whichever node Ray chose.

Responsible for: what crosses from the driver to the task and back (`ShortJob` as JSON, since stage
parameters are raw JSON; `ShortOutcome` as msgpack, deliverables included; both typed by msgspec, never
pickled), finding out whether the driver's run directory is reachable
from this node (a shared filesystem) or the short must run in a node-local scratch directory and send its
deliverables back, and running `runner.run.run_pipeline` there. Every stage still runs in its own process
under its watchdog and ceiling; if Ray kills this worker, the stages' parent-death signal takes their
trees with it. Not responsible for choosing nodes, retrying or the batch summary (`cluster.driver`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

import msgspec

from aishorts.ipc.params import PipelineParams
from aishorts.ipc.pipeline import StageSpec
from aishorts.runner.console import interrupt_handling
from aishorts.cluster.progress import RemoteObserver
from aishorts.runner.limits import Limits
from aishorts.runner.report import RunReport
from aishorts.runner.run import RunOptions, run_pipeline
from aishorts.runner.rundir import RunManifest

DELIVERABLES = ("final.mp4", "captions.srt", "captions.ass", "thumbnail.jpg", "report.json", "run.json", "memory.svg")
"""What a short leaves at the top of its run directory, sent back to the driver when it cannot read the node's disk."""
PROBE_NAME = ".cluster-probe"
MAX_RETRIES = 3
"""Times Ray reruns a task whose worker or node was lost; an ending of the runner's own (exit 3...) never is."""
NODE_MEMORY = re.compile(r"was (\S+ used / \S+ limit)")


def lost_worker_words(exc: BaseException, memory_monitor: bool) -> str:
    """Why Ray lost the worker running a task, in words a user can act on: Ray's own memory monitor (the node ran
    low on memory, whatever our ceilings said) or a worker or node that died."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if memory_monitor:
        found = NODE_MEMORY.search(text)
        said = f" ({found.group(1)})" if found else ""
        return (f"Ray's memory monitor killed it: its node ran low on memory{said}; free memory on that node, run"
                " fewer shorts on it at once, or start Ray there with a higher RAY_memory_usage_threshold")
    return f"the Ray worker running it was lost {MAX_RETRIES + 1} times ({first})"


class StageWire(msgspec.Struct, kw_only=True):
    """A `StageSpec` on its way to a node: its fixed parameters stay raw JSON (`null`: the run's own)."""

    name: str
    module: str
    inputs: tuple[str, ...] = ()
    output: str
    params: msgspec.Raw

    @classmethod
    def of(cls, spec: StageSpec) -> StageWire:
        params = spec.params if spec.params is not None else msgspec.Raw(b"null")
        return cls(name=spec.name, module=spec.module, inputs=spec.inputs, output=spec.output, params=params)

    def spec(self) -> StageSpec:
        params = None if bytes(self.params).strip() == b"null" else self.params
        return StageSpec(name=self.name, module=self.module, inputs=self.inputs, output=self.output, params=params)


class ShortJob(msgspec.Struct, kw_only=True):
    """Everything one short's supervisor needs, as planned and checked by the driver."""

    run_dir: str
    """Absolute path of the short's run directory on the driver's machine."""
    probe_token: str
    """Content of `BATCH/.cluster-probe` on the driver: seeing it at the same path means a shared filesystem."""
    share: Literal["auto", "never"] = "auto"
    """never: run in the node's scratch directory and send the deliverables back even where the disk is shared."""
    label: str
    pipeline: list[StageWire]
    params: PipelineParams
    limits: Limits
    max_ram: int | None
    start_from: str | None = None
    only: str | None = None
    device: str = "auto"
    threads: int = 1
    progress_address: str | None = None
    """Where the driver listens for this short's progress (`cluster.progress`); None: lines on stderr."""
    progress_token: str = ""
    resume_args: list[str] = []
    command: list[str] = []
    manifest: RunManifest


class Deliverable(msgspec.Struct):
    name: str
    data: bytes


class ShortOutcome(msgspec.Struct, kw_only=True):
    node: str
    """The node's address and the start of its Ray node id (8 hex digits; the live display shows 4)."""
    shared: bool
    """The short ran in the driver's run directory itself (else in a scratch directory on the node)."""
    report: RunReport
    files: list[Deliverable] = []


def run_short(job_bytes: bytes) -> bytes:
    """The Ray task: decode the job, run the pipeline under its supervisor, encode how it ended."""
    job = msgspec.json.decode(job_bytes, type=ShortJob)
    shared = _sees_driver_files(job)
    run_dir = Path(job.run_dir) if shared else scratch_dir(job.run_dir)
    node = this_node()
    opts = RunOptions(
        run_dir=run_dir, pipeline=tuple(stage.spec() for stage in job.pipeline), params=job.params,
        limits=job.limits, max_ram=job.max_ram, start_from=job.start_from, only=job.only, device=job.device,
        threads=job.threads, resume_args=job.resume_args, label=f"{job.label}@{node[:-4]}",
        command=job.command or ["aishorts-runner"], manifest=job.manifest,
    )
    observer = RemoteObserver(job.progress_address, job.progress_token)
    try:
        with interrupt_handling() as cancel:  # Ray's cancel arrives as SIGINT: a clean stop, reports written
            report = run_pipeline(opts, observer, cancel)
    finally:
        observer.close()
    files = [] if shared else _deliverables(run_dir)
    return msgspec.msgpack.encode(ShortOutcome(node=node, shared=shared, report=report, files=files))


def scratch_dir(driver_run_dir: str) -> Path:
    """A node-local run directory for a short whose driver's disk this node cannot see; the same on every retry.

    Keyed by the driver's path, so a retried or rerun task on this node resumes where the last one stopped.
    """
    key = hashlib.sha256(driver_run_dir.encode()).hexdigest()[:16]
    root = Path(os.environ.get("AISHORTS_CLUSTER_SCRATCH") or Path(tempfile.gettempdir()) / "aishorts-cluster")
    return root / f"{key}-{Path(driver_run_dir).name}"


def this_node() -> str:
    import ray

    context = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"


def _sees_driver_files(job: ShortJob) -> bool:
    if job.share == "never":
        return False
    probe = Path(job.run_dir).parent / PROBE_NAME
    try:
        return probe.read_text() == job.probe_token
    except OSError:
        return False


def _deliverables(run_dir: Path) -> list[Deliverable]:
    return [Deliverable(name, (run_dir / name).read_bytes()) for name in DELIVERABLES if (run_dir / name).is_file()]

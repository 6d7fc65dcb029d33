"""`--topics-file F --cluster ADDRESS`: the batch's shorts as Ray tasks, admitted by memory across the nodes.

Responsible for: importing Ray (only here, only under --cluster; without it, exit 2 with the install
command), connecting (`auto`, `HOST:PORT`, or `local`: a private one-machine Ray started and stopped by
this run), refusing before anything is submitted a short that no node can hold, submitting one task per
short with `memory` = what that short's budget needs (its heaviest stage ceiling plus the supervisor's
reserve) so Ray places and queues shorts by memory, collecting how each ended, writing back the
deliverables of shorts that ran where the driver's disk is not visible, and `batch.json`.

Ray's `memory` is admission only: it never enforces it. The runner's watchdog on each node remains what
stops a stage at its ceiling, and an out-of-memory stop (exit 3) is a result reported in batch.json, not
a Ray retry. A lost node or a worker killed by Ray's own memory monitor is retried by Ray (`MAX_RETRIES`),
safe because stage stamps make a rerun skip what was finished. With `--cluster-unit stage` the shorts'
run loops stay here and each stage is a task of its own (`cluster.stages`). Planning and checking the rows
is `runner.batch`'s job, running one short `cluster.task`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from aishorts.cluster.progress import progress_server
from aishorts.cluster.reaper import private_temp_dir, start_reaper
from aishorts.cluster.stages import ClusterStageExecutor
from aishorts.cluster.task import MAX_RETRIES, PROBE_NAME, ShortJob, ShortOutcome, StageWire, lost_worker_words, run_short
from aishorts.ipc.files import atomic_write_bytes, read_struct, write_struct
from aishorts.ipc.sizes import format_size
from aishorts.runner.batch import PlannedShort, batch_item, batch_report, print_batch, run_pipelines
from aishorts.runner.budget import MemoryBudget
from aishorts.runner.console import display_for, interrupt_handling
from aishorts.runner.errors import UsageError
from aishorts.runner.limits import Limits
from aishorts.runner.report import RunReport
from aishorts.runner.rundir import RunManifest, claimed

INSTALL_HINT = 'pip install -e ".[cluster]"'
STAGE_MODE_SHORTS_AT_ONCE = 32
"""--cluster-unit stage: shorts whose supervisors run at once on the driver (each mostly waits on its stage's task)."""
CANCEL_GRACE_S = 30.0
"""After Ctrl-C: how long running shorts get to stop their stages and write their reports before a forced cancel."""
CONNECT_TIMEOUT_S = 5.0
HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
RETURNED_MARKER = ".cluster-returned.json"


@dataclass(frozen=True)
class NodeRoom:
    """What one alive Ray node offers to tasks."""

    name: str
    memory: int
    cpus: float


@dataclass(frozen=True)
class Need:
    """What one short asks Ray for: its budget's need, from its heaviest stage."""

    memory: int
    stage: str
    ceiling: int


class Returned(msgspec.Struct, kw_only=True):
    """Written beside deliverables the driver received: which node made them, from what manifest."""

    node: str
    manifest: RunManifest


def run_on_cluster(args: argparse.Namespace, limits: Limits, shorts: list[PlannedShort], batch_dir: Path,
                   fresh: bool, max_ram: int | None) -> int:
    _refuse_local_only_options(args)
    ray = import_ray(loopback=_on_loopback(args.cluster))
    needs = [short_need(short) for short in shorts]
    # Ray prints what workers and raylets log on the driver's stdout: with --json, stdout is the report's alone
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet_stdout, connected(ray, args.cluster):
        refuse_what_cannot_fit(args.topics_file, shorts, needs, alive_nodes(ray))
        with interrupt_handling() as cancel, claimed(batch_dir, fresh=fresh) as batch_dir:
            token = secrets.token_hex(16)
            atomic_write_bytes(batch_dir / PROBE_NAME, token.encode())
            for short in shorts:
                short.opts.run_dir = batch_dir / short.opts.run_dir.name
                short.opts.threads = 1  # each asks Ray for one CPU: a node runs as many as its cores and memory hold
            start = time.monotonic()
            if args.cluster_unit == "stage":
                results, nodes = _run_by_stage(ray, args, limits, shorts, batch_dir, token, cancel)
            else:
                progress_token = secrets.token_hex(16)
                with display_for(args, limits.warn_fraction) as observer, \
                        progress_server(ray.util.get_node_ip_address(), progress_token, observer) as address:
                    results, nodes = _run_all(ray, args, shorts, needs, _Wire(token, address, progress_token), cancel)
            items = [batch_item(short, results.get(index), node=nodes.get(index, ""))
                     for index, short in enumerate(shorts)]
            report = batch_report(batch_dir, items, jobs=len(shorts), max_ram=max_ram,
                                  peak=max((item.peak_rss_bytes for item in items), default=0),
                                  wall_s=time.monotonic() - start, cluster=args.cluster)
            write_struct(batch_dir / "batch.json", report)
    print_batch(args, report)
    return report.exit_code


def import_ray(loopback: bool = False):
    """Ray, configured before its first import (it reads these variables then); UsageError if not installed."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # each short's progress lines as they come, not "repeated 5x"
    if loopback:  # else Ray swaps 127.0.0.1 for the host's address (and a private cluster would face the network)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "ray":
            raise
        raise UsageError(f"--cluster needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def short_need(short: PlannedShort) -> Need:
    """Stages of one short run one after another: it needs its heaviest ceiling plus the supervisor's reserve."""
    stage, ceiling = max(short.opts.ceilings.items(), key=lambda item: item[1])
    return Need(memory=ceiling + short.opts.limits.parent_reserve, stage=stage, ceiling=ceiling)


@contextlib.contextmanager
def connected(ray, address: str) -> Iterator[None]:
    """Connected to the cluster for the block; a `local` one is started for it and stopped after."""
    options: dict = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address == "local":  # private, and on loopback only: nothing of it is reachable from the network
        folder = private_temp_dir()  # removed with every process of this head once the driver ends (cluster.reaper)
        start_reaper(folder)
        options.update(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=str(folder))
    elif address == "auto":
        options.update(address=address)
    elif HOST_PORT.match(address):
        _refuse_unreachable(address)  # Ray itself waits minutes on an address where nothing listens
        options.update(address=address)
    else:
        raise UsageError(f"--cluster {address}: give auto, HOST:PORT (a Ray head's address) or local")
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--cluster {address}: cannot connect to a Ray cluster ({_first_line(exc)}); start one with"
                         " `ray start --head` on the head node, or try --cluster local") from None
    try:
        yield
    finally:
        ray.shutdown()


def _on_loopback(address: str) -> bool:
    return address == "local" or address.rpartition(":")[0].strip("[]") in ("127.0.0.1", "localhost", "::1")


def _refuse_unreachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"--cluster {address}: no Ray head answers there ({exc.strerror or exc}); start one with"
                         " `ray start --head --port PORT` on the head node, or try --cluster local") from None


def alive_nodes(ray) -> list[NodeRoom]:
    return [
        NodeRoom(name=f"{node['NodeManagerAddress']}/{node['NodeID'][:8]}",
                 memory=int(node["Resources"].get("memory", 0)), cpus=float(node["Resources"].get("CPU", 0)))
        for node in ray.nodes() if node.get("Alive")
    ]


def refuse_what_cannot_fit(source: Path, shorts: list[PlannedShort], needs: list[Need], nodes: list[NodeRoom]) -> None:
    """A task larger than every node would wait forever (Ray only logs it): refuse it now, naming the stage."""
    usable = [node for node in nodes if node.cpus >= 1]
    if not usable:
        raise UsageError("--cluster: no alive node of the cluster offers a CPU to run a short on")
    largest = max(usable, key=lambda node: node.memory)
    for short, need in zip(shorts, needs):
        if need.memory > largest.memory:
            raise UsageError(
                f"--topics-file {source}, line {short.line} ({short.subject}): stage {need.stage} needs"
                f" {format_size(need.memory)} ({format_size(need.ceiling)} ceiling + the supervisor's"
                f" {format_size(need.memory - need.ceiling)}) but the largest node, {largest.name}, offers"
                f" {format_size(largest.memory)} of Ray memory; give that row a lower limit"
                f" (\"limit\": \"{need.stage}=SIZE\") or add a node with more memory"
            )


@dataclass(frozen=True)
class _Wire:
    """What every job of this batch carries besides its own options."""

    probe_token: str
    progress_address: str
    progress_token: str


def _run_all(ray, args, shorts: list[PlannedShort], needs: list[Need], wire: _Wire, cancel):
    """Submit every short not already finished, then gather how each ended; index -> report or refusal, and node."""
    remote = ray.remote(run_short)
    share = "never" if _env_share_never() else "auto"
    results: dict[int, object] = {}
    nodes: dict[int, str] = {}
    pending = {}
    for index, (short, need) in enumerate(zip(shorts, needs)):
        returned = _returned_and_done(short)
        if returned is not None:
            results[index], nodes[index] = returned
            continue
        job = _job(short, wire, share)
        ref = remote.options(memory=need.memory, num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False,
                             name=f"aishorts-short-{short.opts.label}").remote(msgspec.json.encode(job))
        pending[ref] = index
    stream = sys.stdout  # stderr under --json (see run_on_cluster)
    print(f"--cluster {args.cluster}: {len(pending)} short(s) submitted, {len(shorts) - len(pending)} already done",
          file=stream, flush=True)
    cancelled_at = None
    while pending:
        if cancel.is_set() and cancelled_at is None:
            cancelled_at = time.monotonic()
            for ref in pending:
                ray.cancel(ref)
        if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
            for ref in pending:
                ray.cancel(ref, force=True)
            break
        done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for ref in done:
            index = pending.pop(ref)
            results[index], nodes[index] = _collect(ray, ref, shorts[index])
            _say_finished(stream, shorts[index], results[index], nodes[index])
    return results, nodes


def _run_by_stage(ray, args, limits: Limits, shorts: list[PlannedShort], batch_dir: Path, token: str, cancel):
    """Each short's supervisor here, each of its stages a Ray task (`cluster.stages`); index -> report, and nodes."""
    executor = ClusterStageExecutor(ray, batch_dir, token, reserve=limits.parent_reserve)
    for short in shorts:
        short.opts.executor = executor
    runs = [short.opts for short in shorts]
    results, _, _ = run_pipelines(args, limits, runs, min(len(runs), STAGE_MODE_SHORTS_AT_ONCE), MemoryBudget(None),
                                  cancel)  # Ray, not a local budget, admits the stages
    nodes = {index: " ".join(executor.placed.get(str(short.opts.run_dir.resolve()), []))
             for index, short in enumerate(shorts)}
    for result in results.values():
        if isinstance(result, RunReport):  # the supervisor here is shared by all shorts: their peak is their stages'
            result.peak_rss_bytes = max((stage.peak_rss_bytes for stage in result.stages), default=0)
    return results, nodes


def _job(short: PlannedShort, wire: _Wire, share: str) -> ShortJob:
    opts = short.opts
    return ShortJob(
        run_dir=str(opts.run_dir.resolve()), probe_token=wire.probe_token, share=share, label=opts.label,
        progress_address=wire.progress_address, progress_token=wire.progress_token,
        pipeline=[StageWire.of(spec) for spec in opts.pipeline], params=opts.params, limits=opts.limits,
        max_ram=opts.max_ram,
        start_from=opts.start_from, only=opts.only, device=opts.device, threads=opts.threads,
        resume_args=opts.resume_args, command=opts.command, manifest=opts.manifest,
    )


def _collect(ray, ref, short: PlannedShort) -> tuple[object, str]:
    """How one task ended: its run's report (any exit of the runner's own), or the error that ended it."""
    try:
        outcome = msgspec.msgpack.decode(ray.get(ref), type=ShortOutcome)
    except ray.exceptions.TaskCancelledError:
        return None, ""
    except ray.exceptions.RayTaskError as exc:  # raised inside the task, e.g. its run directory is in use
        cause = exc.cause if exc.cause is not None else exc
        hint = "; install aishorts-runner (the same version) on every node" if isinstance(cause, ImportError) else ""
        return RuntimeError(_first_line(cause) + hint), ""
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as exc:
        words = lost_worker_words(exc, memory_monitor=isinstance(exc, ray.exceptions.OutOfMemoryError))
        return RuntimeError(f"{words}; rerun the batch to resume it"), ""
    except ray.exceptions.RayError as exc:
        return RuntimeError(f"Ray could not run it: {_first_line(exc)}"), ""
    except msgspec.DecodeError as exc:
        return RuntimeError(f"its node answered in a form this driver does not read ({exc}); install the same"
                            " aishorts-runner version on every node"), ""
    if not outcome.shared:
        _write_returned(short, outcome)
        # the node's scratch directory means nothing here: a rerun of this short starts from its local directory
        if outcome.report.suggestion is not None:
            outcome.report.rerun_command = outcome.report.suggestion.command_line(str(short.opts.run_dir))
    outcome.report.run_dir = str(short.opts.run_dir)
    return outcome.report, outcome.node


def _write_returned(short: PlannedShort, outcome: ShortOutcome) -> None:
    """Deliverables of a short that ran on a node without the driver's disk, into its local run directory."""
    with claimed(short.opts.run_dir) as run_dir:
        for item in outcome.files:
            atomic_write_bytes(run_dir / Path(item.name).name, item.data)
        if short.opts.manifest is not None:
            write_struct(run_dir / RETURNED_MARKER, Returned(node=outcome.node, manifest=short.opts.manifest))


def _returned_and_done(short: PlannedShort) -> tuple[RunReport, str] | None:
    """A short whose deliverables came back finished from the same manifest need not run again."""
    run_dir = short.opts.run_dir
    if not (run_dir / RETURNED_MARKER).is_file():
        return None
    try:
        returned = read_struct(run_dir / RETURNED_MARKER, Returned)
        report = read_struct(run_dir / "report.json", RunReport)
    except Exception:  # anything unreadable: run it again rather than trust it
        return None
    if report.status != "done" or msgspec.json.encode(returned.manifest) != msgspec.json.encode(short.opts.manifest):
        return None
    report.run_dir = str(run_dir)
    return report, returned.node


def _say_finished(stream, short: PlannedShort, result: object, node: str) -> None:
    if isinstance(result, RunReport):
        what = result.status + (f" ({result.message})" if result.status != "done" else "")
    else:
        what = "interrupted" if result is None else f"failed ({result})"
    print(f"[{short.opts.label}] {short.subject}: {what}" + (f" on {node}" if node else ""), file=stream, flush=True)


def _refuse_local_only_options(args: argparse.Namespace) -> None:
    if args.jobs != 1:
        raise UsageError("--jobs is for one machine; with --cluster, Ray runs as many shorts at once as each node's"
                         " memory and cores hold")
    if args.isolation != "process":
        raise UsageError("--cluster runs every stage in its own process: leave out --isolation")


def _env_share_never() -> bool:
    return os.environ.get("AISHORTS_CLUSTER_SHARED", "auto") == "never"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

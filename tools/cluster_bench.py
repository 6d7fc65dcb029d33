"""What `--cluster` costs and gives on one machine: a batch of balloon shorts by `--jobs 2` and by a local 2-node Ray.

    .venv/bin/python -m tools.cluster_bench [--shorts 4] [--mb 300] [--hold 2]

Runs the same batch twice, through the real CLI: once with `--jobs 2` (no Ray), once with `--cluster`
against a two-node Ray cluster on 127.0.0.1 (one CPU each) that this tool starts and stops by Ray's API.
Prints one JSON object: wall time of each, the largest short's peak per node, and the RSS of Ray's own
processes (idle, and at most while the batch ran; stage trees excluded) and of the driver. Needs the
`cluster` extra. A developer tool, not part of the product.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from aishorts.ipc.sizes import MiB
from tools.balloon import write_pipeline

RUNNER = [sys.executable, "-m", "aishorts"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster_bench")
    parser.add_argument("--shorts", type=int, default=4)
    parser.add_argument("--mb", type=int, default=300, help="what each short's heavy balloon stage allocates")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds the heavy stage holds its memory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    pipeline, topics = write_batch(work, args.shorts, args.mb, args.hold)
    try:
        result = {"shorts": args.shorts, "heavy_mb": args.mb, "hold_s": args.hold,
                  "jobs_2": local_batch(pipeline, topics, work / "local"),
                  "cluster_2_nodes": cluster_batch(pipeline, topics, work / "cluster")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


def write_batch(work: Path, shorts: int, mb: int, hold_s: float) -> tuple[Path, Path]:
    """The balloon pipeline (a light stage, then one holding `mb` MiB for `hold_s`) and a JSONL batch of `shorts`."""
    pipeline = write_pipeline(
        work / "p.toml",
        {"name": "light", "ceiling": "150M", "params": {"mb": 20}},
        {"name": "heavy", "ceiling": f"{mb + 150}M", "params": {"mb": mb, "rate_mb_s": 200, "hold_s": hold_s}},
    )
    topics = work / "shorts.jsonl"
    topics.write_text("".join(json.dumps({"topic": f"short {i}"}) + "\n" for i in range(1, shorts + 1)))
    return pipeline, topics


def local_batch(pipeline: Path, topics: Path, batch_dir: Path) -> dict:
    start = time.monotonic()
    out = subprocess.run([*RUNNER, "--pipeline", str(pipeline), "--topics-file", str(topics), "--jobs", "2",
                          "--run-dir", str(batch_dir), "--json"], capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    report = json.loads(out.stdout)
    return {"exit": out.returncode, "wall_s": round(wall, 2), "batch_peak_mib": report["peak_rss_bytes"] // MiB}


def cluster_batch(pipeline: Path, topics: Path, batch_dir: Path) -> dict:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = temp_dir  # Ray notes the cluster's address there, not in the shared /tmp/ray
    os.makedirs(os.path.join(temp_dir, "ray"))
    node = dict(num_cpus=1, node_ip_address="127.0.0.1", temp_dir=temp_dir, memory=4096 * MiB)
    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False))
    cluster.add_node(**node)
    try:
        start_s = time.monotonic() - started
        time.sleep(3)  # let the prestarted workers settle
        idle = _ray_rss()
        sampler = _Sampler()
        sampler.start()
        start = time.monotonic()
        proc = subprocess.Popen([*RUNNER, "--pipeline", str(pipeline), "--topics-file", str(topics), "--cluster",
                                 cluster.address, "--run-dir", str(batch_dir), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        sampler.driver = proc.pid
        stdout, _ = proc.communicate()
        wall = time.monotonic() - start
        sampler.stop()
        report = json.loads(stdout)
        per_node: dict[str, int] = {}
        for item in report["items"]:
            per_node[item["node"]] = max(per_node.get(item["node"], 0), item["peak_rss_bytes"] // MiB)
        return {
            "exit": proc.returncode, "wall_s": round(wall, 2), "cluster_start_s": round(start_s, 2),
            "largest_short_peak_per_node_mib": per_node,
            "ray_idle_rss_mib": idle[0] // MiB, "ray_idle_processes": idle[1],
            "ray_max_rss_during_batch_mib": sampler.ray_peak // MiB, "driver_max_rss_mib": sampler.driver_peak // MiB,
        }
    finally:
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ray_rss(exclude: int | None = None) -> tuple[int, int]:
    """RSS of this process's Ray descendants (GCS, raylets, workers...), leaving out stage trees, and their count."""
    total, count = 0, 0
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid == exclude or any("tools.balloon" in part for part in proc.cmdline()) or _under_stage(proc):
                continue
            total += proc.memory_info().rss
            count += 1
        except psutil.Error:
            continue
    return total, count


def _under_stage(proc: psutil.Process) -> bool:
    return any("tools.balloon" in " ".join(parent.cmdline()) for parent in proc.parents())


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ray_peak = 0
        self.driver_peak = 0
        self.driver: int | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            self.ray_peak = max(self.ray_peak, _ray_rss(exclude=self.driver)[0])
            if self.driver is not None:
                try:
                    self.driver_peak = max(self.driver_peak, psutil.Process(self.driver).memory_info().rss)
                except psutil.Error:
                    pass

    def stop(self) -> None:
        self._done.set()
        self.join()


if __name__ == "__main__":
    sys.exit(main())

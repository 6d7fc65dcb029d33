"""Measures `aishorts-runner serve`: its own RSS idle and with two jobs running, and event latency.

Latency is from a stage's progress event (stamped with the wall clock in the
stage process) to its arrival at a Server-Sent Events client: the path a
stage's progress takes to the page (stage pipe, watchdog, supervisor
observer, event hub, HTTP). Runs balloon stages only, so it costs seconds.

    .venv/bin/python -m tests.measure_serve
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from aishorts.ipc.sizes import MiB

from tests.serve_helpers import running_server, stage_of, submit, wait_task
from tools.balloon import write_pipeline


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_pipeline(work / "grow.toml", {"name": "grow", "ceiling": "600M", "params": {"mb": 400, "rate_mb_s": 40}})
        write_pipeline(work / "hold.toml", {"name": "hold", "ceiling": "300M", "params": {"mb": 100, "hold_s": 600}})
        with running_server(work / "runs", "--pipeline", work / "grow.toml", "--pipeline", work / "hold.toml",
                            "--jobs", "3") as server, server.client() as client:
            process = psutil.Process(server.process.pid)
            time.sleep(2)
            idle = process.memory_info().rss
            latencies = _latencies(server.url, client)
            held = [submit(client, topic=f"held {i}", pipeline="hold") for i in range(2)]
            for task_id in held:
                wait_task(client, task_id, lambda t: stage_of(t, "hold")["rss_bytes"] > 90 * MiB, timeout=120)
            busy = 0
            for _ in range(20):
                busy = max(busy, process.memory_info().rss)
                time.sleep(0.1)
            for task_id in held:
                client.delete(f"/api/v1/tasks/{task_id}")
    latencies.sort()
    print(json.dumps({
        "server_rss_idle_mib": round(idle / MiB, 1),
        "server_rss_two_jobs_running_mib": round(busy / MiB, 1),
        "progress_events": len(latencies),
        "latency_median_ms": round(1000 * statistics.median(latencies), 1),
        "latency_p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
        "latency_max_ms": round(1000 * latencies[-1], 1),
    }, indent=2))


def _latencies(url: str, client: httpx.Client) -> list[float]:
    task_id = submit(client, topic="latency", pipeline="grow")
    latencies: list[float] = []
    with httpx.stream("GET", f"{url}/api/v1/tasks/{task_id}/events", timeout=120) as stream:
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if kind == "progress" and data.get("at"):
                    latencies.append(time.time() - data["at"])
                if kind == "task" and data["state"] in (-1, 1):
                    break
    return latencies


if __name__ == "__main__":
    main()

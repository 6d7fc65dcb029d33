"""`--cluster local` leaves nothing behind when the driver is killed, or when Ray's own memory monitor kills a short.

The driver is SIGKILLed mid-stage (nothing of its own cleanup runs). Every
process that inherited this test's marker (the private head's GCS, raylet,
agents and workers, and the stage trees) must be gone soon after, and the
head's temporary folder removed. Before, Ray's dashboard and runtime-env
agents lived on for about a minute and the session folder stayed in /tmp.

Ray's memory monitor kills a task's worker when its node's memory passes a
threshold, whatever the runner's ceilings say; the batch must then say so in
words a user can act on, with nothing of the short left running.
"""

from __future__ import annotations

import glob
import json
import signal
import subprocess

import psutil

import pytest

from tests.runner_helpers import RUNNER, balloon_pipeline, marker_env, processes_with_marker, wait_for

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def test_a_killed_local_cluster_driver_leaves_no_ray_process_or_session_folder(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "hold", "params": {"mb": 10, "hold_s": 120}})
    topics = tmp_path / "topics.txt"
    topics.write_text("held\n")
    env, marker = marker_env()
    before = set(glob.glob("/tmp/aishorts-ray-*")) | set(glob.glob("/tmp/ray/session_2*"))
    driver = subprocess.Popen([*RUNNER, "--pipeline", str(pipeline), "--topics-file", str(topics), "--cluster", "local",
                               "--run-dir", str(tmp_path / "batch")], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: list((tmp_path / "batch").glob("*/hold/call.json")), timeout=240, step=0.2)
        assert any("raylet" in " ".join(p.cmdline()) for p in processes_with_marker(marker) if _alive(p))
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        driver.kill()
    assert wait_for(lambda: not [p for p in processes_with_marker(marker) if _alive(p)], timeout=30, step=0.5), \
        [" ".join(p.cmdline())[:120] for p in processes_with_marker(marker)]
    left = lambda: (set(glob.glob("/tmp/aishorts-ray-*")) | set(glob.glob("/tmp/ray/session_2*"))) - before  # noqa: E731
    assert wait_for(lambda: not left(), timeout=10), left()


def _alive(proc) -> bool:
    try:
        return proc.status() != "zombie"
    except Exception:
        return False


def test_a_short_killed_by_rays_memory_monitor_mid_stage_is_reported_as_such_and_leaves_nothing_running(tmp_path):
    # the node's threshold sits 2 GiB above what the machine uses now; the stage grows past it, slowly enough that
    # Ray's monitor (every 50 ms) kills its worker mid-stage, once and again on Ray's one retry
    memory = psutil.virtual_memory()
    threshold = (memory.total - memory.available + 2 * 1024**3) / memory.total
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "grow", "ceiling": "8G",
                                                      "params": {"mb": 4000, "rate_mb_s": 250, "hold_s": 60}})
    topics = tmp_path / "topics.txt"
    topics.write_text("eaten by ray\n")
    env, marker = marker_env()
    env.update(RAY_memory_usage_threshold=f"{threshold:.4f}", RAY_min_memory_free_bytes="-1",
               RAY_memory_monitor_refresh_ms="50", RAY_task_oom_retries="1")
    out = subprocess.run([*RUNNER, "--pipeline", str(pipeline), "--topics-file", str(topics), "--cluster", "local",
                          "--run-dir", str(tmp_path / "batch"), "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)

    assert out.returncode == 1, out.stderr
    item = json.loads(out.stdout)["items"][0]
    assert item["status"] == "failed"
    assert item["message"].startswith("Ray's memory monitor killed it: its node ran low on memory (")
    assert "RAY_memory_usage_threshold" in item["message"] and "rerun the batch to resume it" in item["message"]
    grow = tmp_path / "batch" / "01-eaten-by-ray" / "grow"
    assert (grow / "stage.previous.log").exists()  # the stage ran in both attempts: each kill landed mid-stage
    assert wait_for(lambda: not [p for p in processes_with_marker(marker) if _alive(p)], timeout=30, step=0.5), \
        [" ".join(p.cmdline())[:120] for p in processes_with_marker(marker)]

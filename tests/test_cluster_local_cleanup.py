"""`--cluster local` leaves nothing behind when the driver is killed: no Ray process, no session folder.

The driver is SIGKILLed mid-stage (nothing of its own cleanup runs). Every
process that inherited this test's marker (the private head's GCS, raylet,
agents and workers, and the stage trees) must be gone soon after, and the
head's temporary folder removed. Before, Ray's dashboard and runtime-env
agents lived on for about a minute and the session folder stayed in /tmp.
"""

from __future__ import annotations

import glob
import signal
import subprocess

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

"""Helpers for tests that drive `aishorts-runner` as users do: a real process, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from tools.balloon import write_pipeline

RUNNER = [sys.executable, "-m", "aishorts"]


def balloon_pipeline(path: Path, *stages: dict) -> Path:
    """Write a developer pipeline of balloon stages; each dict holds name, ceiling and params."""
    return write_pipeline(path, *stages)


def marker_env() -> tuple[dict[str, str], str]:
    """An environment carrying a unique marker, inherited by every process the run starts."""
    marker = uuid.uuid4().hex
    return {**os.environ, "AISHORTS_TEST_MARKER": marker}, marker


def processes_with_marker(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("AISHORTS_TEST_MARKER") == marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def ctrl_c_once_running(*args: str | Path, cwd: Path, processes: int, start_s: float, stop_s: float
                       ) -> tuple[int, str, str]:
    """Run the CLI, press Ctrl-C once `processes` processes of the run are alive, and wait for it to stop.

    Returns its exit code, its stdout and the marker its processes carry (see `processes_with_marker`);
    an assertion fails if fewer processes ever start within `start_s`.
    """
    env, marker = marker_env()
    parent = subprocess.Popen([*RUNNER, *map(str, args)], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(processes_with_marker(marker)) >= processes, timeout=start_s)
        parent.send_signal(signal.SIGINT)
        out, _ = parent.communicate(timeout=stop_s)
    finally:
        parent.kill()
    return parent.returncode, out, marker


def run_cli(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RUNNER, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def short_from_script(work: Path, script: str) -> Path:
    """The run folder of a short made by the CLI, as a user would, from `script` (under a 4G budget) in `work`."""
    (work / "script.txt").write_text(script)
    run_dir = work / "run"
    out = run_cli("--script", work / "script.txt", "--run-dir", run_dir, "--max-ram", "4G", cwd=work, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return run_dir


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def stage(report_data: dict, name: str) -> dict:
    return next(s for s in report_data["stages"] if s["name"] == name)


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False

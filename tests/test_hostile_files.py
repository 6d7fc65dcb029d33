"""Files that never end or never answer, given by the user or planted in a run directory.

`/dev/zero` as a script once grew the supervisor to 24 GB; a named pipe as a
script, `run.json`, an artifact, a stamp or `.lock` hung the CLI beyond the
reach of SIGTERM and Ctrl-C, and wedged the server. User files are read only
when they are regular files, up to a size cap; run-directory files are opened
without blocking and refused unless regular. Each case drives the real
command with a timeout: a hang fails the test rather than the suite.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.runner_helpers import RUNNER, balloon_pipeline, report, run_cli, stage, wait_for
from tests.serve_helpers import running_server

QUICK = 60  # seconds: a refusal is immediate; a hang would run into this


def _refused(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "MemoryError" not in out.stderr
    message = out.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("option", ["--script", "--topics-file", "--limits"])
def test_an_endless_device_as_a_user_file_is_refused_at_once(tmp_path, option):
    args = [option, "/dev/zero"] + ([] if option != "--limits" else ["--topic", "x"])
    _refused(run_cli(*args, "--run-dir", tmp_path / "run", cwd=tmp_path, timeout=QUICK),
             "/dev/zero", "not a regular file")


def test_a_user_file_over_the_size_cap_is_refused_without_reading_it_all(tmp_path):
    huge = tmp_path / "script.txt"
    with open(huge, "wb") as handle:  # sparse: 1 GiB that costs no disk
        handle.truncate(1024 ** 3)
    _refused(run_cli("--script", huge, "--run-dir", tmp_path / "run", cwd=tmp_path, timeout=QUICK),
             "--script", "over the 16 MiB")


@pytest.mark.parametrize("option", ["--script", "--topics-file", "--limits"])
def test_a_named_pipe_as_a_user_file_is_refused_not_waited_on(tmp_path, option):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    args = [option, fifo] + ([] if option != "--limits" else ["--topic", "x"])
    _refused(run_cli(*args, "--run-dir", tmp_path / "run", cwd=tmp_path, timeout=QUICK),
             str(fifo), "not a regular file")


def test_a_named_pipe_as_a_batch_rows_script_is_refused_naming_the_line(tmp_path):
    os.mkfifo(tmp_path / "row.txt")
    topics = tmp_path / "topics.jsonl"
    topics.write_text('{"topic": "fine"}\n{"script": "row.txt"}\n')
    _refused(run_cli("--topics-file", topics, cwd=tmp_path, timeout=QUICK), "line 2", "not a regular file")


def _finished_run(tmp_path: Path) -> tuple[Path, Path]:
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}}, {"name": "b", "params": {"mb": 5}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    return pipeline, run_dir


def _plant_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_a_named_pipe_as_run_json_is_refused(tmp_path):
    pipeline, run_dir = _finished_run(tmp_path)
    _plant_fifo(run_dir / "run.json")
    _refused(run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path, timeout=QUICK),
             "run.json", "not a regular file")


def test_a_named_pipe_as_lock_is_refused(tmp_path):
    pipeline, run_dir = _finished_run(tmp_path)
    _plant_fifo(run_dir / ".lock")
    _refused(run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path, timeout=QUICK),
             ".lock", "not a regular file")


@pytest.mark.parametrize("planted", ["a/stamp.json", "b/artifact.json", "b/stamp.json"])
def test_a_named_pipe_as_a_stamp_or_an_artifact_is_never_trusted_and_the_stage_is_redone(tmp_path, planted):
    pipeline, run_dir = _finished_run(tmp_path)
    _plant_fifo(run_dir / planted)
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path, timeout=QUICK)
    assert out.returncode == 0, out.stderr
    assert stage(report(run_dir), planted.split("/")[0])["status"] == "done"
    assert (run_dir / planted).is_file()  # replaced by a real file, not written into the pipe


def test_a_named_pipe_as_an_input_artifact_stops_the_stage_with_one_line(tmp_path):
    pipeline, run_dir = _finished_run(tmp_path)
    _plant_fifo(run_dir / "a" / "artifact.json")
    _refused(run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--only", "b", cwd=tmp_path, timeout=QUICK),
             "artifact.json", "not a regular file")


def test_the_server_starts_and_answers_beside_a_task_full_of_pipes(tmp_path):
    runs = tmp_path / "runs"
    for name in ("lockpipe", "manifestpipe"):
        (runs / name).mkdir(parents=True)
    os.mkfifo(runs / "lockpipe" / ".lock")
    os.mkfifo(runs / "manifestpipe" / "run.json")
    os.mkfifo(runs / "manifestpipe" / "report.json")
    with running_server(runs) as server, server.client() as client:  # running_server waits for it to answer
        assert client.get("/api/v1/server", timeout=20).status_code == 200
        listed = client.get("/api/v1/tasks", timeout=20)
        assert listed.status_code == 200
        assert client.get("/api/v1/tasks/manifestpipe/report.json", timeout=20).status_code == 404


def test_ctrl_c_while_the_command_loads_ends_with_one_line_not_a_traceback(tmp_path):
    """-X importtime names each module as it finishes loading: the signal is sent inside the CLI's own imports."""
    for attempt in range(3):
        proc = subprocess.Popen([RUNNER[0], "-X", "importtime", *RUNNER[1:], "--topic", "x", "--run-dir",
                                 str(tmp_path / f"run{attempt}")], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if re.search(r"\|\s+(aishorts\.)?ipc\.pipeline$", line.rstrip()):  # just before runner.run, the heaviest
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        proc.wait(QUICK)
        assert any("aishorts.ipc.pipeline" in line for line in lines), "".join(lines)[-2000:]
        assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest[-3000:]
        assert proc.returncode == 130, rest[-2000:]


def test_a_refused_run_removes_the_new_run_directory_it_named(tmp_path):
    run_dir = tmp_path / "brand-new"
    out = run_cli("--topic", "octopus", "--only", "tts", "--run-dir", run_dir, cwd=tmp_path, timeout=QUICK)
    _refused(out, "stage tts needs the artifact of stage script")
    assert not run_dir.exists()
    run_dir.mkdir()  # one that existed before is left as it was
    (run_dir / "mine.txt").write_text("keep")
    _refused(run_cli("--topic", "octopus", "--only", "tts", "--run-dir", run_dir, cwd=tmp_path, timeout=QUICK))
    assert (run_dir / "mine.txt").read_text() == "keep"

"""Whether a supervisor holds a run directory is asked of `runner.rundir`, which owns its lock."""

import os
import subprocess

from aishorts.runner.rundir import claimed, held_elsewhere
from tests.runner_helpers import RUNNER, balloon_pipeline, wait_for


def test_a_run_directory_is_held_while_a_supervisor_runs_in_it_and_free_after(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "hold", "params": {"mb": 5, "hold_s": 60}})
    run_dir = tmp_path / "run"
    cli = subprocess.Popen([*RUNNER, "--pipeline", str(pipeline), "--run-dir", str(run_dir)], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (run_dir / "hold" / "call.json").exists(), timeout=60)
        assert held_elsewhere(run_dir)
        assert held_elsewhere(run_dir)  # asking never takes the lock away from its holder
        cli.terminate()
        assert cli.wait(60) == 130
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert not held_elsewhere(run_dir)


def test_this_processes_own_claim_holds_it_too(tmp_path):
    with claimed(tmp_path / "run") as run_dir:
        assert held_elsewhere(run_dir)
    assert not held_elsewhere(run_dir)
    assert not held_elsewhere(tmp_path / "never-made")


def test_a_lock_that_is_not_a_regular_file_counts_as_held_and_never_blocks(tmp_path):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / ".lock")
    assert held_elsewhere(tmp_path / "run")

"""A stage over its ceiling is stopped, with its whole tree, and the run can be resumed with more."""

import json
import shlex
import time

from aishorts.ipc.sizes import parse_size
from tests.runner_helpers import RUNNER, balloon_pipeline, marker_env, processes_with_marker, report, run_cli, stage


def test_stage_past_its_ceiling_is_killed_reported_and_resumable(tmp_path):
    pipeline = balloon_pipeline(
        tmp_path / "p.toml",
        {"name": "first", "params": {"mb": 30}},
        {"name": "grow", "ceiling": "200M", "params": {"mb": 350, "rate_mb_s": 300}},
    )
    run_dir = tmp_path / "run"
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)

    assert out.returncode == 3, out.stderr
    data = report(run_dir)
    grow = stage(data, "grow")
    assert data["status"] == "oom" and grow["status"] == "oom"
    assert grow["ceiling_bytes"] == parse_size("200M")
    assert grow["peak_rss_bytes"] > grow["ceiling_bytes"]
    # at 300 MB/s a tree left alive for 0.4 s would reach 320 MB: the kill came within a few polls
    assert grow["peak_rss_bytes"] < parse_size("320M")
    assert grow["gone_after_crossing_s"] < 1.0
    assert "grow" in out.stdout and "200M" in out.stdout and "--limit grow=" in out.stdout
    assert (run_dir / "first" / "artifact.json").exists()
    first_written = (run_dir / "first" / "artifact.json").stat().st_mtime_ns
    assert not (run_dir / "grow" / "artifact.json").exists()

    rerun = shlex.split(data["rerun_command"])
    assert rerun[:3] == RUNNER  # the runner as it was started, not a bare name that may not be on PATH
    again = run_cli(*rerun[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    data = report(run_dir)
    assert stage(data, "first")["status"] == "skipped"
    assert stage(data, "grow")["status"] == "done"
    assert (run_dir / "first" / "artifact.json").stat().st_mtime_ns == first_written


def test_a_growing_child_is_caught_through_the_tree_and_nothing_survives(tmp_path):
    pipeline = balloon_pipeline(
        tmp_path / "p.toml",
        {"name": "render", "ceiling": "250M", "params": {"mb": 20, "child_mb": 800, "rate_mb_s": 400, "hold_s": 30}},
    )
    env, marker = marker_env()
    out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", cwd=tmp_path, env=env)
    assert out.returncode == 3, out.stderr
    grow = stage(report(tmp_path / "run"), "render")
    assert grow["status"] == "oom"
    # the stage itself holds ~20 MB: only the child's growth can have crossed 250M
    assert grow["peak_rss_bytes"] > parse_size("250M")
    deadline = time.monotonic() + 5
    while processes_with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with_marker(marker) == []


def test_warning_fraction_is_recorded_before_the_ceiling(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "near", "ceiling": "300M", "params": {"mb": 255, "rate_mb_s": 400, "hold_s": 0.5}})
    out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    near = stage(report(tmp_path / "run"), "near")
    assert near["status"] == "done"
    assert near["warnings"] and "of its ceiling" in near["warnings"][0]
    assert "warning" in out.stdout


def test_a_stage_that_fails_shows_its_error_and_keeps_its_log(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "broken", "params": {"fail": True}})
    out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert out.returncode == 1
    assert "asked to fail" in out.stdout
    broken = stage(report(tmp_path / "run"), "broken")
    assert broken["status"] == "failed" and broken["exit_code"] == 1
    assert "asked to fail" in (tmp_path / "run" / broken["log"]).read_text()


def test_max_ram_lowers_the_ceiling_and_report_records_the_budget(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "grow", "ceiling": "2G", "params": {"mb": 500, "rate_mb_s": 500}})
    out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", "--max-ram", "400M", "--json", cwd=tmp_path)
    assert out.returncode == 3
    data = json.loads(out.stdout)
    assert data["max_ram_bytes"] == parse_size("400M")
    assert stage(data, "grow")["ceiling_bytes"] == parse_size("300M")  # 400M less the parent's 100M reserve
    assert "--max-ram" in data["rerun_command"]
    assert (tmp_path / "run" / "memory.svg").read_text().startswith("<svg")

"""Stages as a graph: each starts once its inputs are stamped, side by side when memory and cores allow.

Every test drives the real runner over balloon stages (real processes, real files) in a diamond like the
product's: `a` feeds two branches (`b`, and `c` then `d`, as tts beside broll then match), and `e` waits for
both, as the timeline does. Timing margins are generous: the machine is shared.
"""

import os

import pytest

from tests.runner_helpers import (
    balloon_pipeline, ctrl_c_once_running, processes_with_marker, report, run_cli, stage, wait_for,
)

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two stages side by side need two cores")


def diamond(path, b=None, c=None, d=None, ceiling="200M"):
    """a -> (b | c -> d) -> e; `b`, `c` and `d` take balloon params, each branch stage holding a while by default."""
    return balloon_pipeline(
        path,
        {"name": "a", "ceiling": ceiling, "params": {"mb": 10}},
        {"name": "b", "ceiling": ceiling, "inputs": ["a"], "params": b or {"mb": 20, "hold_s": 2.0}},
        {"name": "c", "ceiling": ceiling, "inputs": ["a"], "params": c or {"mb": 20, "hold_s": 1.0}},
        {"name": "d", "ceiling": ceiling, "inputs": ["c"], "params": d or {"mb": 20, "hold_s": 0.5}},
        {"name": "e", "ceiling": ceiling, "inputs": ["b", "d"], "params": {"mb": 10}},
    )


def span(data, name):
    s = stage(data, name)
    return s["started_at_s"], s["ended_at_s"]


def overlap(data, first, second):
    (s1, e1), (s2, e2) = span(data, first), span(data, second)
    return s1 < e2 and s2 < e1


INPUTS = {"b": ["a"], "c": ["a"], "d": ["c"], "e": ["b", "d"]}


def test_a_stage_starts_only_after_each_of_its_inputs_is_stamped(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("--pipeline", diamond(tmp_path / "p.toml"), "--run-dir", run_dir, "--max-ram", "2G", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = report(run_dir)
    for name, inputs in INPUTS.items():
        started = span(data, name)[0]
        # the stage's call file is written just before its process starts; each input's stamp must be older
        call_written = (run_dir / name / "call.json").stat().st_mtime_ns
        for upstream in inputs:
            assert span(data, upstream)[1] <= started, (name, upstream, data["stages"])
            assert (run_dir / upstream / "stamp.json").stat().st_mtime_ns <= call_written, (name, upstream)
        assert stage(data, name)["ready_at_s"] >= max(span(data, upstream)[1] for upstream in inputs)


def test_independent_branches_run_side_by_side_under_a_roomy_budget(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("--pipeline", diamond(tmp_path / "p.toml", b={"mb": 20, "hold_s": 4.0}), "--run-dir", run_dir,
                   "--max-ram", "2G", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = report(run_dir)
    assert overlap(data, "b", "c") and overlap(data, "b", "d")
    assert stage(data, "b")["waited_for_budget_s"] < 1.0
    branch_sum = sum(stage(data, name)["wall_s"] for name in "bcd")
    assert data["wall_s"] < stage(data, "a")["wall_s"] + branch_sum + stage(data, "e")["wall_s"]
    assert "b: " in (run_dir / "memory.svg").read_text()  # a lane per stage on the run's clock


def test_stages_that_do_not_fit_together_wait_their_turn_and_the_run_finishes(tmp_path):
    # 300M ceilings under --max-ram 500M: after the supervisor's 100M reserve, one stage at a time
    run_dir = tmp_path / "run"
    pipeline = diamond(tmp_path / "p.toml", ceiling="300M")
    done = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--max-ram", "500M", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = report(run_dir)
    names = [s["name"] for s in data["stages"]]
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not overlap(data, first, second), (first, second, data["stages"])
    assert max(stage(data, name)["waited_for_budget_s"] for name in "bc") > 0.5  # ready together, one waited
    assert "waiting for" in done.stdout


def test_a_failed_branch_lets_the_other_finish_and_a_resume_redoes_only_what_is_missing(tmp_path):
    run_dir = tmp_path / "run"
    failing = diamond(tmp_path / "fail.toml", b={"mb": 20, "hold_s": 3.0}, d={"mb": 10, "fail": True})
    first = run_cli("--pipeline", failing, "--run-dir", run_dir, "--max-ram", "2G", cwd=tmp_path)
    assert first.returncode == 1, first.stdout
    data = report(run_dir)
    assert stage(data, "d")["status"] == "failed" and data["failed_stage"] == "d"
    assert stage(data, "b")["status"] == "done"  # it was running beside d and was let finish
    assert "b finished and is kept" in data["message"]
    assert "e" not in [s["name"] for s in data["stages"]]

    mended = diamond(tmp_path / "ok.toml", b={"mb": 20, "hold_s": 3.0})
    again = run_cli("--pipeline", mended, "--run-dir", run_dir, "--max-ram", "2G", cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    data = report(run_dir)
    assert {s["name"]: s["status"] for s in data["stages"]} == {
        "a": "skipped", "b": "skipped", "c": "skipped", "d": "done", "e": "done"}

    from_c = run_cli("--pipeline", mended, "--run-dir", run_dir, "--max-ram", "2G", "--from", "c", cwd=tmp_path)
    assert from_c.returncode == 0, from_c.stdout
    statuses = {s["name"]: s["status"] for s in report(run_dir)["stages"]}
    assert statuses == {"a": "skipped", "b": "skipped", "c": "done", "d": "done", "e": "done"}


def test_ctrl_c_with_two_stages_running_stops_both_reports_both_and_leaves_no_process(tmp_path):
    long = {"mb": 30, "child_mb": 30, "rate_mb_s": 200, "hold_s": 120}
    pipeline = diamond(tmp_path / "p.toml", b=long, c=long)
    run_dir = tmp_path / "run"
    # the supervisor, two stages and each one's child
    returncode, out, marker = ctrl_c_once_running("--pipeline", pipeline, "--run-dir", run_dir, "--max-ram", "2G",
                                                  cwd=tmp_path, processes=5, start_s=90, stop_s=60)
    assert returncode == 130, out
    assert wait_for(lambda: not processes_with_marker(marker), timeout=10)
    data = report(run_dir)
    assert data["status"] == "interrupted"
    assert stage(data, "b")["status"] == stage(data, "c")["status"] == "interrupted"
    assert stage(data, "b")["survivor_pids"] == stage(data, "c")["survivor_pids"] == []
    assert not (run_dir / "b" / "stamp.json").exists() and not (run_dir / "c" / "stamp.json").exists()


def test_one_of_two_running_stages_out_of_memory_the_other_finishes_and_the_report_says_which(tmp_path):
    run_dir = tmp_path / "run"
    pipeline = diamond(tmp_path / "p.toml", b={"mb": 400, "rate_mb_s": 100, "hold_s": 1.0},
                       c={"mb": 20, "hold_s": 6.0}, ceiling="250M")
    done = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--max-ram", "2G", cwd=tmp_path)
    assert done.returncode == 3, done.stdout
    data = report(run_dir)
    assert data["status"] == "oom" and data["failed_stage"] == "b"
    assert stage(data, "b")["status"] == "oom"
    assert stage(data, "c")["status"] == "done" and overlap(data, "b", "c")
    assert (run_dir / "c" / "stamp.json").exists()
    assert "c finished and is kept" in data["message"]
    assert "--limit b=" in data["rerun_command"]
    assert {s["name"] for s in data["stages"]} == {"a", "b", "c"}  # nothing new started after the OOM


def test_the_single_process_baseline_still_runs_its_stages_one_after_another(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("--pipeline", diamond(tmp_path / "p.toml"), "--run-dir", run_dir, "--isolation", "none",
                   "--max-ram", "2G", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = report(run_dir)
    assert data["isolation"] == "none"
    names = [s["name"] for s in data["stages"]]
    assert names == ["a", "b", "c", "d", "e"]
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not overlap(data, first, second), (first, second)


def test_the_realtime_bench_reads_the_overlap_and_the_supervisors_gaps_from_the_report(tmp_path):
    from tools.bench import realtime_figures

    run_dir = tmp_path / "run"
    done = run_cli("--pipeline", diamond(tmp_path / "p.toml", b={"mb": 20, "hold_s": 4.0}), "--run-dir", run_dir,
                   "--max-ram", "2G", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = realtime_figures(report(run_dir), duration_s=10.0)
    assert figures["stage_sum_s"] > figures["wall_s"]  # b ran beside c and d
    assert figures["gaps_s"] < 1.0
    assert figures["ratio"] == pytest.approx(figures["wall_s"] / 10.0)
    assert list(figures["stages"]) == ["a", "b", "c", "d", "e"]
    # at most two at once here: the stages' own times less the time two ran at once is the time any ran
    assert figures["overlap_s"] > 1.0
    assert figures["stage_sum_s"] - figures["overlap_s"] + figures["gaps_s"] == pytest.approx(figures["wall_s"], abs=0.5)
    assert figures["cpu_s"] == pytest.approx(sum(t["cpu"] for t in figures["stages"].values()))
    assert figures["stages"]["b"]["cpu"] > 0

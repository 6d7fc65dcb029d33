"""Several pipelines under one --max-ram: stages wait for budget instead of overcommitting."""

import json
import os

from aishorts.ipc.sizes import parse_size
from tests.runner_helpers import balloon_pipeline, run_cli


def test_two_jobs_under_a_budget_for_one_heavy_stage_both_finish_within_it(tmp_path):
    pipeline = balloon_pipeline(
        tmp_path / "p.toml",
        {"name": "light", "ceiling": "100M", "params": {"mb": 5}},
        {"name": "heavy", "ceiling": "350M", "params": {"mb": 250, "rate_mb_s": 500, "hold_s": 1.5}},
    )
    topics = tmp_path / "topics.txt"
    topics.write_text("first topic\n# a comment\n\nsecond topic\n")
    batch_dir = tmp_path / "batch"
    out = run_cli("--pipeline", pipeline, "--topics-file", topics, "--jobs", "2", "--max-ram", "600M",
                  "--run-dir", batch_dir, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    batch = json.loads(out.stdout)
    assert batch == json.loads((batch_dir / "batch.json").read_text())
    assert [item["status"] for item in batch["items"]] == ["done", "done"]
    assert len({item["run_dir"] for item in batch["items"]}) == 2
    # 600M less the 100M reserve leaves room for one 350M ceiling: one heavy stage waited for the other
    assert batch["waited_for_budget_s"] > 0.5
    assert batch["peak_rss_bytes"] < parse_size("600M")
    # side by side, each stage is given its share of the cores instead of all of them
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for item in batch["items"]:
        call = json.loads((tmp_path / item["run_dir"] / "heavy" / "call.json").read_text())
        assert call["threads"] == share


def test_one_topics_failure_does_not_stop_the_others(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "grow", "ceiling": "150M", "params": {"mb": 100, "rate_mb_s": 500}})
    topics = tmp_path / "topics.txt"
    topics.write_text("first topic\nsecond topic\n")
    batch_dir = tmp_path / "batch"
    assert run_cli("--pipeline", pipeline, "--topics-file", topics, "--run-dir", batch_dir, cwd=tmp_path).returncode == 0
    first = json.loads((batch_dir / "batch.json").read_text())["items"][0]["run_dir"]
    (tmp_path / first / "grow" / "stamp.json").unlink()  # only the first topic has work left

    out = run_cli("--pipeline", pipeline, "--topics-file", topics, "--jobs", "2", "--limit", "grow=60M",
                  "--run-dir", batch_dir, cwd=tmp_path)
    assert out.returncode == 3
    batch = json.loads((batch_dir / "batch.json").read_text())
    assert [item["status"] for item in batch["items"]] == ["oom", "done"]
    assert batch["items"][0]["failed_stage"] == "grow"
    assert "--limit grow=" in batch["items"][0]["rerun_command"]
    assert "first topic" in out.stdout and "--limit grow=" in out.stdout


def test_empty_topics_file_is_bad_input(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("\n# nothing\n")
    out = run_cli("--topics-file", topics, cwd=tmp_path)
    assert out.returncode == 2 and "no topics" in out.stderr

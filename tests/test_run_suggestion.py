"""After an OOM the report holds the suggested limits and budget as values; every rerun command is rendered from them."""

import json
import shlex

from aishorts.ipc.files import read_struct
from aishorts.ipc.sizes import parse_size
from aishorts.runner.report import RunReport
from tests.runner_helpers import RUNNER, balloon_pipeline, report, run_cli, stage


def _oom_run(tmp_path, *options):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "first", "params": {"mb": 10}},
                                {"name": "grow", "ceiling": "200M", "params": {"mb": 250, "rate_mb_s": 300}})
    run_dir = tmp_path / "run"
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--limit", "first=120M", *options, cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    return run_dir


def test_the_suggestion_holds_the_raised_limit_the_users_own_limits_and_the_budget(tmp_path):
    run_dir = _oom_run(tmp_path, "--max-ram", "600M")
    data = report(run_dir)
    suggestion = data["suggestion"]
    grow = stage(data, "grow")
    assert suggestion["stage"] == "grow" and suggestion["more_memory"] is True
    assert suggestion["limits"]["grow"] >= grow["peak_rss_bytes"] * 3 // 2  # 1.5x the peak it reached, at least
    assert suggestion["limits"]["first"] == parse_size("120M")  # the user's own --limit is repeated
    assert suggestion["max_ram"] >= parse_size("600M")
    assert suggestion["command"] == RUNNER


def test_the_rerun_command_is_the_suggestion_rendered_and_resumes_the_run(tmp_path):
    run_dir = _oom_run(tmp_path)
    loaded = read_struct(run_dir / "report.json", RunReport)
    assert loaded.rerun_command == loaded.suggestion.command_line(str(run_dir))
    words = shlex.split(loaded.rerun_command)
    assert words[words.index("--run-dir") + 1] == str(run_dir)
    assert f"grow={loaded.suggestion.limit_sizes()['grow']}" in words and "first=120M" in words
    # rendered for another directory (the cluster's driver does so for a short that ran in a node's scratch)
    elsewhere = shlex.split(loaded.suggestion.command_line("/elsewhere/run"))
    assert elsewhere[elsewhere.index("--run-dir") + 1] == "/elsewhere/run"
    again = run_cli(*words[len(RUNNER):], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert stage(report(run_dir), "grow")["status"] == "done" and stage(report(run_dir), "first")["status"] == "skipped"


def test_the_servers_resume_offers_the_suggestions_values_and_an_older_report_without_one_still_loads(tmp_path):
    from aishorts.serve.jobs import Job
    from aishorts.serve.views import task_view

    run_dir = _oom_run(tmp_path)
    view = task_view(Job(id="run", run_dir=run_dir, record=None), 0.8)
    suggestion = read_struct(run_dir / "report.json", RunReport).suggestion
    assert view.status == "oom" and view.suggested_limits == suggestion.limit_sizes() and view.suggested_max_ram is None
    assert view.suggested_limits["first"] == "120M"

    older = json.loads((run_dir / "report.json").read_text())
    del older["suggestion"]
    (run_dir / "report.json").write_text(json.dumps(older))
    loaded = read_struct(run_dir / "report.json", RunReport)
    assert loaded.suggestion is None and loaded.status == "oom"
    view = task_view(Job(id="run", run_dir=run_dir, record=None), 0.8)
    assert view.status == "oom" and view.suggested_limits == {} and view.rerun_command == older["rerun_command"]

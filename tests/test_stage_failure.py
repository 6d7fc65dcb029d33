"""A stage that cannot finish says why in a typed message; only one that died without saying leaves its log to read."""

import pytest

from tests.runner_helpers import balloon_pipeline, report, run_cli, stage


def _failed(tmp_path, how: str, *options: str) -> dict:
    tmp_path.mkdir(exist_ok=True)
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "broken", "module": "tests.failing_stage",
                                                      "params": {"how": how}})
    out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", *options, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    broken = stage(report(tmp_path / "run"), "broken")
    assert broken["status"] == "failed"
    return broken


def test_a_stage_error_is_reported_in_the_stages_own_words_without_its_logs_chatter(tmp_path):
    broken = _failed(tmp_path, "refuse")
    assert broken["message"] == "stage broken failed (exit code 1): the voice xx_nobody is not one of af_heart, am_michael"
    log = (tmp_path / "run" / broken["log"]).read_text()
    assert "library chatter 19" in log and "the voice xx_nobody" in log  # the log still has everything


def test_a_crash_is_reported_as_its_exception_and_where_it_was_raised(tmp_path):
    broken = _failed(tmp_path, "crash")
    assert broken["message"].startswith(
        "stage broken failed (exit code 1): ZeroDivisionError: division by zero (raised at tests/failing_stage.py:")
    assert broken["message"].endswith(" in _divide; the traceback is in broken/stage.log)")
    assert "chatter" not in broken["message"]
    assert "Traceback (most recent call last)" in (tmp_path / "run" / broken["log"]).read_text()


def test_isolation_none_reports_a_crash_in_the_same_words(tmp_path):
    isolated = _failed(tmp_path / "a", "crash")
    in_process = _failed(tmp_path / "b", "crash", "--isolation", "none")
    assert in_process["message"] == isolated["message"]
    assert "ZeroDivisionError" in (tmp_path / "b" / "run" / in_process["log"]).read_text()


@pytest.mark.parametrize("how, said", [("exit", "exit code 3"), ("segfault", "signal 11")])
def test_a_stage_that_died_without_saying_is_reported_with_its_logs_last_lines(tmp_path, how, said):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "broken", "module": "tests.failing_stage",
                                                      "params": {"how": how}})
    run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", cwd=tmp_path)
    broken = stage(report(tmp_path / "run"), "broken")
    assert broken["status"] == "failed" and broken["message"].startswith(f"stage broken failed ({said}): ")
    assert broken["message"].rstrip().endswith(f"last words before {'exit 3' if how == 'exit' else 'SIGSEGV'}")

"""What users see while a run goes, and the single-process baseline."""

import io
import json

from rich.console import Console

from aishorts.ipc.messages import ProgressEvent
from aishorts.runner.display import LiveDisplay, PlainDisplay
from aishorts.runner.events import StageFinished, StageProgress, StageSample, StageStarted, StageWaiting, StageWarning
from aishorts.runner.report import StageReport
from tests.runner_helpers import balloon_pipeline, report, run_cli, stage


TTS = {"label": "01", "stage": "tts"}


def _feed(display):
    display(StageWaiting(**TTS, ceiling=600 * 2**20))
    display(StageStarted(**TTS, ceiling=600 * 2**20))
    display(StageSample(**TTS, rss=550 * 2**20))
    display(StageProgress(**TTS, event=ProgressEvent(t=0, message="sentence 3/9", fraction=0.33)))
    display(StageProgress(**TTS, event=ProgressEvent(t=0, kind="phase", message="load_model", phase_s=2.5)))
    display(StageWarning(**TTS, message="at 92% of its ceiling"))
    display(StageFinished(**TTS, report=StageReport(name="tts", status="done", peak_rss_bytes=560 * 2**20,
                                                    ceiling_bytes=600 * 2**20, wall_s=12.0)))


def test_live_display_shows_state_memory_against_ceiling_and_progress():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    live = LiveDisplay(console)
    with live:
        live(StageStarted(**TTS, ceiling=600 * 2**20))
        live(StageSample(**TTS, rss=300 * 2**20))
        live(StageProgress(**TTS, event=ProgressEvent(t=0, message="sentence 3/9", fraction=0.33)))
        running = io.StringIO()
        Console(file=running, width=140, color_system=None).print(live._render())
        _feed(live)
    assert "01:tts" in running.getvalue() and "running" in running.getvalue()
    assert "300M/600M" in running.getvalue() and "sentence 3/9 33%" in running.getvalue()
    final = out.getvalue()
    assert "done" in final and "560M/600M" in final
    assert "at 92% of its ceiling" in final


def test_plain_display_writes_lines_a_log_can_keep():
    out = io.StringIO()
    _feed(PlainDisplay(out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "[01:tts] waiting for 600M of the memory budget"
    assert "[01:tts] load_model took 2.5s" in lines
    assert lines[-1] == "[01:tts] done: peak 560M of 600M in 12.0s"


def test_isolation_none_runs_the_same_stages_in_the_parent_with_the_same_reports(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 50}}, {"name": "b", "params": {"mb": 80}})
    results = {}
    for mode in ("process", "none"):
        out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / mode, "--isolation", mode, "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        results[mode] = json.loads(out.stdout)
        assert results[mode]["isolation"] == mode
        for name in ("a", "b"):
            artifact = json.loads((tmp_path / mode / name / "artifact.json").read_text())
            artifact.pop("seconds")
            results[mode][name] = artifact
    assert results["process"]["a"] == results["none"]["a"] and results["process"]["b"] == results["none"]["b"]
    assert [s["status"] for s in results["none"]["stages"]] == ["done", "done"]
    # in one process the 50 MB of `a` may stay resident; the isolated parent never holds a stage's memory
    assert results["process"]["parent_peak_rss_bytes"] < results["none"]["parent_peak_rss_bytes"]
    assert all(s["run_rss_after_bytes"] < 100 * 2**20 for s in results["process"]["stages"])


def test_isolation_none_reports_a_failing_stage_like_the_isolated_runner(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "broken", "params": {"fail": True}})
    out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", "--isolation", "none", cwd=tmp_path)
    assert out.returncode == 1
    assert "asked to fail" in stage(report(tmp_path / "run"), "broken")["message"]


def test_real_stages_write_the_same_artifacts_in_either_isolation(tmp_path):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        '[[stage]]\nname = "theme"\nmodule = "aishorts.stages.theme.stage"\noutput = "theme"\n'
        'params = { topic = "Why octopuses have three hearts" }\n\n'
        '[[stage]]\nname = "script"\nmodule = "aishorts.stages.script.stage"\noutput = "script"\ninputs = ["theme"]\n'
        'params = { script_text = "Octopuses have three hearts. Two pump blood through the gills. Follow for more." }\n'
    )
    for mode in ("process", "none"):
        out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / mode, "--isolation", mode, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
    for name in ("theme", "script"):
        assert (tmp_path / "process" / name / "artifact.json").read_bytes() == (tmp_path / "none" / name / "artifact.json").read_bytes()

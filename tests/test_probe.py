"""`aishorts-runner probe` finds the smallest ceiling a stage finishes with, without touching the run."""

import tomllib

from aishorts.ipc.sizes import parse_size
from tests.runner_helpers import balloon_pipeline, report, run_cli, stage


def test_probe_brackets_a_stage_need_and_writes_a_limits_file_that_works(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 1}},
                                # held for 6 polls: a peak briefer than one poll may pass under a lower ceiling
                                {"name": "grow", "ceiling": "1G", "params": {"mb": 200, "rate_mb_s": 800, "hold_s": 0.3}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    before = (run_dir / "grow" / "artifact.json").read_bytes()
    peak = stage(report(run_dir), "grow")["peak_rss_bytes"]

    found = tmp_path / "found.toml"
    out = run_cli("probe", "--run-dir", run_dir, "--stage", "grow", "--step", "25M", "--write-limits", found, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    limits = tomllib.loads(found.read_text())["stages"]["grow"]
    passing = parse_size(limits["minimum"])
    assert peak - parse_size("25M") <= passing <= peak + parse_size("60M")
    assert "--limit grow=" in out.stdout
    assert (run_dir / "grow" / "artifact.json").read_bytes() == before  # the run itself was not touched

    failing_limit = out.stdout.split("reproduce its OOM with --limit ")[1].split(";")[0]
    again = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "again", "--limit", failing_limit, cwd=tmp_path)
    assert again.returncode == 3
    assert run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "fits", "--limits", found, cwd=tmp_path).returncode == 0


def test_probe_needs_a_finished_run(tmp_path):
    out = run_cli("probe", "--run-dir", tmp_path / "nothing", cwd=tmp_path)
    assert out.returncode == 2 and "not a run" in out.stderr


def test_an_attempt_sees_every_earlier_stage_s_files_not_only_its_direct_inputs(tmp_path):
    from aishorts.ipc.pipeline import DEFAULT_PIPELINE
    from aishorts.runner.probe import _link_inputs

    run_dir = tmp_path / "run"
    for name in ("theme", "script", "tts", "broll", "match", "timeline", "render"):
        (run_dir / name).mkdir(parents=True)
        (run_dir / name / "artifact.json").write_text("{}")
    (run_dir / "tts" / "narration.wav").write_bytes(b"RIFF")  # named by the timeline, read by render
    render = next(s for s in DEFAULT_PIPELINE if s.name == "render")

    _link_inputs(run_dir, tmp_path / "scratch", render, DEFAULT_PIPELINE)
    linked = sorted(p.name for p in (tmp_path / "scratch").iterdir())
    assert linked == ["broll", "match", "script", "theme", "timeline", "tts"]  # not render itself
    assert (tmp_path / "scratch" / "tts" / "narration.wav").read_bytes() == b"RIFF"

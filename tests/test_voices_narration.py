"""The tts stage with native voices: each language's default, the fallback to jm_kumo, --voice checked.

The native voices are fetched once per session with the real npm into a
cache of the session's own (skipped where npm is not installed); that cache
and the voice-less one share the timed model already built in the usual cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aishorts.ipc.params import TtsParams
from aishorts.stages.common.context import StageError
from aishorts.stages.tts import kokoro_timing, stage as tts, voices
from aishorts.stages.tts.kokoro_timing import voiced_coverage
from tests.test_stage_tts import read_wav, rms, script

pytestmark = pytest.mark.slow


def cache_sharing_the_timed_model(root: Path) -> Path:
    """A stages' cache at `root` whose `kokoro/` is the usual cache's (so the timed model is not rebuilt)."""
    model_folder = kokoro_timing.timed_model().parent
    root.mkdir(parents=True, exist_ok=True)
    (root / "kokoro").symlink_to(model_folder, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def native_cache(tmp_path_factory) -> Path:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed, so the native voices cannot be fetched")
    root = cache_sharing_the_timed_model(tmp_path_factory.mktemp("native-cache"))
    previous = os.environ.get("AISHORTS_CACHE")
    os.environ["AISHORTS_CACHE"] = str(root)
    try:
        result = voices.fetch_native_voices()
    finally:
        if previous is None:
            os.environ.pop("AISHORTS_CACHE")
        else:
            os.environ["AISHORTS_CACHE"] = previous
    assert result.ok, result.message
    return root


@pytest.fixture
def with_native_voices(native_cache, monkeypatch):
    monkeypatch.setenv("AISHORTS_CACHE", str(native_cache))


@pytest.fixture
def without_native_voices(tmp_path, monkeypatch):
    """An empty cache but for the timed model, and no npm on PATH."""
    root = cache_sharing_the_timed_model(tmp_path / "cache")
    monkeypatch.setenv("AISHORTS_CACHE", str(root))
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))


def assert_timed_narration(run_dir: Path, narration, words: list[str]) -> None:
    audio, rate, _, _ = read_wav(run_dir / narration.wav)
    assert rms(audio) > 0.02, "the narration is silent"
    spoken = [w for s in narration.sentences for w in s.words]
    assert [w.text for w in spoken] == words
    assert all(w.end > w.start for w in spoken), spoken
    assert all(a.end <= b.start for a, b in zip(spoken, spoken[1:])), "word times go backwards"
    assert voiced_coverage(audio, rate, [(w.start, w.end) for w in spoken]) > 0.9


def test_english_is_narrated_by_af_heart_with_word_times(tmp_path, run_stage_inline, with_native_voices):
    source = script("In 1969, people walked on the Moon.", "Octopuses have three hearts.")
    narration, events = run_stage_inline(tmp_path, "tts", TtsParams(), script=source)
    assert (narration.voice, narration.language, narration.backend) == ("af_heart", "en-us", "onnx")
    assert 2.0 < narration.duration_s < 10.0
    assert_timed_narration(tmp_path, narration, " ".join(source.sentences).split())
    assert not [e for e in events if e.kind == "log" and "fetch" in e.message]


def test_brazilian_portuguese_is_narrated_by_pf_dora_with_word_times(tmp_path, run_stage_inline, with_native_voices):
    source = script("O polvo tem três corações.", language="pt-br")
    narration, _ = run_stage_inline(tmp_path, "tts", TtsParams(language="pt-br"), script=source)
    assert (narration.voice, narration.language) == ("pf_dora", "pt-br")
    assert 0.8 < narration.duration_s < 6.0
    assert_timed_narration(tmp_path, narration, ["O", "polvo", "tem", "três", "corações."])


def test_an_asked_for_voice_is_used_whatever_the_language(tmp_path, run_stage_inline, with_native_voices):
    narration, _ = run_stage_inline(tmp_path, "tts", TtsParams(voice="am_michael"), script=script("Hello there."))
    assert narration.voice == "am_michael"
    assert_timed_narration(tmp_path, narration, ["Hello", "there."])


def test_unknown_voice_is_refused_listing_the_native_and_shipped_ones(tmp_path, run_stage_inline, with_native_voices):
    with pytest.raises(StageError, match=r"unknown voice 'xx_nobody'.*af_heart.*jm_kumo.*pf_dora") as refused:
        run_stage_inline(tmp_path, "tts", TtsParams(voice="xx_nobody"), script=script("Hello."))
    assert "stages.tts.voices fetch" not in str(refused.value)
    assert not (tmp_path / "tts" / "narration.wav").exists()


def test_without_native_voices_jm_kumo_narrates_and_the_log_says_how_to_fetch(
    tmp_path, run_stage_inline, without_native_voices
):
    narration, events = run_stage_inline(tmp_path / "run", "tts", TtsParams(), script=script("Hello there."))
    assert narration.voice == "jm_kumo"
    assert_timed_narration(tmp_path / "run", narration, ["Hello", "there."])
    (notice,) = [e.message for e in events if e.kind == "log" and "fetch" in e.message]
    assert "af_heart" in notice and "python -m aishorts.stages.tts.voices fetch" in notice and "\n" not in notice


def test_without_native_voices_a_native_voice_asked_for_is_refused_saying_how_to_fetch(
    tmp_path, run_stage_inline, without_native_voices
):
    with pytest.raises(StageError, match=r"unknown voice 'af_heart'.*jm_kumo.*python -m aishorts.stages.tts.voices fetch"):
        run_stage_inline(tmp_path / "run", "tts", TtsParams(voice="af_heart"), script=script("Hello."))


class LogOnly:
    def __init__(self) -> None:
        self.logged: list[str] = []

    def log(self, message: str) -> None:
        self.logged.append(message)

    def progress(self, message: str, fraction: float | None) -> None:
        pass


def test_the_kokoro_backend_gets_the_native_default_without_fetched_tables(without_native_voices):
    ctx = LogOnly()
    assert tts.choose_voice(ctx, "", "kokoro", "pt-br") == "pf_dora"
    assert tts.choose_voice(ctx, "", "kokoro", "es") == "ef_dora"
    assert tts.choose_voice(ctx, "bf_emma", "onnx", "en-us") == "bf_emma"
    assert ctx.logged == []


def test_without_its_native_voice_spanish_is_refused_not_read_by_a_japanese_voice(
    tmp_path, run_stage_inline, without_native_voices, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StageError, match=r"Spanish \(es\) needs its native voice ef_dora.*python -m aishorts.stages.tts.voices fetch"):
        run_stage_inline(tmp_path / "run", "tts", TtsParams(language="es"), script=script("Hola.", language="es"))
    assert not (tmp_path / "run" / "tts" / "narration.wav").exists()


def test_a_voice_of_another_language_asked_for_is_used_and_said(tmp_path, run_stage_inline, with_native_voices):
    narration, events = run_stage_inline(tmp_path, "tts", TtsParams(language="fr", voice="af_heart"),
                                         script=script("Bonjour.", language="fr"))
    assert (narration.voice, narration.language) == ("af_heart", "fr-fr")
    assert any("French with af_heart, a voice for English (US)" in e.message for e in events if e.kind == "log")


def test_at_first_use_the_native_voice_is_fetched_from_the_hub_when_npm_cannot(
    tmp_path, run_stage_inline, native_cache, without_native_voices, monkeypatch
):
    from tests.hub_server import serve_hub

    repo = tmp_path / "hub-repo"
    (repo / "voices").mkdir(parents=True)
    for name in ("af_heart", "bf_emma"):
        shutil.copy(native_cache / "voices" / voices.TABLES / f"{name}.bin", repo / "voices" / f"{name}.bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with serve_hub({voices.HUB_REPO: repo}) as (url, _):
        monkeypatch.setenv("HF_ENDPOINT", url)
        narration, events = run_stage_inline(tmp_path / "run", "tts", TtsParams(), script=script("Hello there."))
    assert narration.voice == "af_heart"
    assert_timed_narration(tmp_path / "run", narration, ["Hello", "there."])
    assert any(e.kind == "log" and f"fetched from {voices.HUB_REPO}" in e.message for e in events)

"""The tts stage: a Script becomes narration.wav with sentence and word times (Kokoro-82M int8 ONNX, offline)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from aishorts.ipc.artifacts import Narration, Script
from aishorts.ipc.params import TtsParams
from aishorts.stages.common.context import StageError
from aishorts.stages.tts import kokoro_timing
from aishorts.stages.tts.kokoro_timing import align_words, voiced_coverage

pytestmark = pytest.mark.slow


def script(*sentences: str, language: str = "en-us") -> Script:
    hook, *body = sentences
    return Script(title="t", hook=hook, body=body, cta="", broll_queries=["ocean"], language=language)


def read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path), "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return pcm.astype(np.float32) / 32768, wav.getframerate(), wav.getnchannels(), wav.getsampwidth()


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0


def test_two_sentence_english_script_becomes_a_timed_narration(tmp_path, run_stage_inline, monkeypatch):
    import imageio_ffmpeg

    from aishorts.stages.tts import stage as tts

    # Small pieces, so the second sentence is also spoken in several calls and their times are joined
    monkeypatch.setattr(tts, "MAX_CALL_PHONEMES", 40)
    source = script(
        "In 1969, people walked on the Moon.",
        "Octopuses have three hearts, blue blood and no bones at all.",
    )
    narration, events = run_stage_inline(tmp_path, "tts", TtsParams(voice="jm_kumo"), script=source)

    assert isinstance(narration, Narration)
    described = (narration.voice, narration.language, narration.backend, narration.device)
    assert described == ("jm_kumo", "en-us", "onnx", "cpu")
    wav_path = tmp_path / narration.wav
    audio, rate, channels, width = read_wav(wav_path)
    assert (rate, channels, width, narration.sample_rate) == (24000, 1, 2, 24000)
    assert narration.duration_s == pytest.approx(len(audio) / rate, abs=1e-3)
    assert 3.0 < narration.duration_s < 15.0
    assert rms(audio) > 0.02, "the narration is silent"
    ffmpeg = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(wav_path)]
    stderr = subprocess.run(ffmpeg, capture_output=True, text=True).stderr
    assert re.search(r"Audio: pcm_s16le.*24000 Hz, mono", stderr), stderr

    first, second = narration.sentences
    assert [s.text for s in narration.sentences] == source.sentences
    assert 0.0 == first.start < first.end < second.start < second.end == pytest.approx(narration.duration_s, abs=1e-3)
    gap = audio[int(first.end * rate) + 10 : int(second.start * rate) - 10]
    assert second.start - first.end == pytest.approx(tts.SENTENCE_GAP_S, abs=0.01) and rms(gap) == 0.0

    words = [w for s in narration.sentences for w in s.words]
    assert [w.text for w in words] == " ".join(source.sentences).split()
    assert len(words) == source.word_count
    for sentence in narration.sentences:
        assert all(sentence.start <= w.start < w.end <= sentence.end for w in sentence.words), sentence
    assert all(a.end <= b.start for a, b in zip(words, words[1:])), "word times go backwards"
    by_text = {w.text: w.end - w.start for w in words}
    assert by_text["1969,"] > 2 * by_text["people"], "the year is read as four words and must last like it"
    assert voiced_coverage(audio, rate, [(w.start, w.end) for w in words]) > 0.9

    phases = {e.message for e in events if e.kind == "phase"}
    assert {"load_model", "synthesise"} <= phases


def test_brazilian_portuguese_sentence_is_narrated(tmp_path, run_stage_inline):
    source = script("O polvo tem três corações.", language="pt-br")
    narration, _ = run_stage_inline(tmp_path, "tts", TtsParams(language="pt-br", voice="jm_kumo"), script=source)

    audio, rate, _, _ = read_wav(tmp_path / narration.wav)
    assert narration.language == "pt-br"
    assert 0.8 < narration.duration_s < 6.0 and rms(audio) > 0.02
    (sentence,) = narration.sentences
    assert [w.text for w in sentence.words] == ["O", "polvo", "tem", "três", "corações."]
    assert all(w.end > w.start for w in sentence.words)
    assert voiced_coverage(audio, rate, [(w.start, w.end) for w in sentence.words]) > 0.9


def test_unknown_voice_is_refused_naming_the_available_ones(tmp_path, run_stage_inline):
    with pytest.raises(StageError, match=r"unknown voice 'xx_nobody'.*jf_alpha.*jm_kumo"):
        run_stage_inline(tmp_path, "tts", TtsParams(voice="xx_nobody"), script=script("Hello there."))
    assert not (tmp_path / "tts" / "narration.wav").exists()


def test_unknown_language_is_refused_naming_the_supported_ones(tmp_path, run_stage_inline):
    with pytest.raises(StageError, match=r"'de'.*en-us.*pt-br"):
        run_stage_inline(tmp_path, "tts", TtsParams(language="de"), script=script("Hallo."))


def test_speed_outside_kokoros_range_is_refused(tmp_path, run_stage_inline):
    with pytest.raises(StageError, match="0.5 to 2.0"):
        run_stage_inline(tmp_path, "tts", TtsParams(speed=3.0), script=script("Hello."))


def test_kokoro_backend_without_hub_weights_says_to_use_onnx(tmp_path, run_stage_inline, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    expected = "kokoro backend needs hexgrad/Kokoro-82M in the local Hugging Face cache; use --tts onnx"
    with pytest.raises(StageError, match=re.escape(expected)):
        run_stage_inline(tmp_path / "run", "tts", TtsParams(backend="kokoro"), script=script("Hello."))


def test_timed_model_is_built_once_and_its_durations_explain_the_audio(tmp_path, monkeypatch):
    import onnxruntime as ort
    from kokoro_onnx.tokenizer import Tokenizer

    monkeypatch.setenv("AISHORTS_CACHE", str(tmp_path))
    monkeypatch.delenv("KOKORO_JA_CACHE", raising=False)
    model = kokoro_timing.timed_model()
    assert model.parent == tmp_path / "kokoro" and (tmp_path / "kokoro-ja" / "kokoro-v1.0.int8.onnx").is_file()
    built = model.stat().st_mtime_ns
    assert kokoro_timing.timed_model() == model and model.stat().st_mtime_ns == built
    assert "KOKORO_JA_CACHE" not in os.environ, "the stage must not leave its environment changed"

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["audio", "duration"]
    tokenizer = Tokenizer()
    tokens = tokenizer.tokenize(tokenizer.phonemize("Three hearts."))
    with np.load(kokoro_timing.voices_file()) as voices:
        style = voices["jm_kumo"][len(tokens) - 1]
    feed = {"tokens": np.array([[0, *tokens, 0]]), "style": style, "speed": np.array([1.0], np.float32)}
    audio, duration = session.run(None, feed)
    assert len(duration) == len(tokens) + 2 and (duration >= 0).all()
    assert audio.size == duration.sum() * kokoro_timing.SAMPLES_PER_FRAME


def test_importing_the_stage_loads_no_heavy_library():
    heavy = "{'numpy', 'onnx', 'onnxruntime', 'kokoro_onnx', 'phonemizer', 'torch'}"
    code = f"import sys, aishorts.stages.tts.stage, aishorts.stages.tts.kokoro_timing, aishorts.stages.tts.voices; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def even_times(phonemes: str, step: float = 0.1) -> tuple[list[float], list[float]]:
    return [i * step for i in range(len(phonemes))], [(i + 1) * step for i in range(len(phonemes))]


def test_words_run_together_by_espeak_get_their_own_times():
    spoken = "ɔnðə mˈuːn."  # "on the Moon." in context: one phoneme word for two text words
    starts, ends = even_times(spoken)
    spans = align_words(["ˈɔn", "ðə", "mˈuːn."], spoken, starts, ends)
    on, the, moon = spans
    assert on == (0.0, pytest.approx(0.2))
    assert the == (pytest.approx(0.2), pytest.approx(0.4))
    assert moon == (pytest.approx(0.5), pytest.approx(1.0))


def test_a_number_read_as_several_words_is_one_word_span():
    spoken = "ɪn nˈaɪntiːn sˈɪksti nˈaɪn, ðə mˈuːn"
    starts, ends = even_times(spoken)
    spans = align_words(["ˈɪn", "nˈaɪntiːn sˈɪksti nˈaɪn,", "ðə", "mˈuːn"], spoken, starts, ends)
    assert spans[1] == (pytest.approx(0.3), pytest.approx(spoken.index(",") * 0.1))
    assert spans[2][0] > spans[1][1]


def test_words_differing_in_context_and_silent_words_keep_count_and_order():
    spoken = "ɐ kˈæt — sˈæt"
    starts, ends = even_times(spoken)
    spans = align_words(["ˈeɪ", "kˈæt", "", "sˈæt"], spoken, starts, ends)
    assert len(spans) == 4
    assert all(s <= e for s, e in spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert spans[0] == (0.0, pytest.approx(0.1))
    assert spans[2][0] == spans[2][1] == spans[3][0], "a word with no sound sits where the next word starts"


def test_voiced_coverage_tells_right_word_times_from_shifted_ones():
    rate = 24000
    t = np.arange(rate * 3) / rate
    audio = np.where((t > 0.5) & (t < 1.0) | (t > 2.0) & (t < 2.5), 0.5 * np.sin(2 * np.pi * 220 * t), 0.0)
    assert voiced_coverage(audio, rate, [(0.5, 1.0), (2.0, 2.5)]) > 0.95
    assert voiced_coverage(audio, rate, [(1.1, 1.6), (2.6, 2.9)]) < 0.2


def test_under_a_small_ceiling_sentences_are_spoken_in_shorter_pieces_and_the_log_says_so(tmp_path):
    from aishorts.stages.tts import stage as tts
    from tests.conftest import stage_context

    lean, lean_events = stage_context(tmp_path, "tts", TtsParams(), 400 * 2**20)
    roomy, roomy_events = stage_context(tmp_path, "tts", TtsParams(), 700 * 2**20)
    assert tts.call_phonemes(lean) == tts.LEAN_CALL_PHONEMES < tts.MAX_CALL_PHONEMES == tts.call_phonemes(roomy)
    assert any("pieces of at most" in e.message for e in lean_events) and not roomy_events


def test_sentences_spoken_side_by_side_give_the_same_narration_as_one_at_a_time(tmp_path, monkeypatch):
    """Two model calls at once on one session (two cores) change nothing in the WAV or its times."""
    import threading

    from aishorts.stages.tts import stage as tts
    from tests.conftest import stage_context

    monkeypatch.setattr(tts, "MAX_CALL_PHONEMES", 40)  # several pieces per sentence, joined in order
    sentences = ["In 1969, people walked on the Moon.", "Octopuses have three hearts and blue blood.",
                 "Their arms can taste what they touch."]
    results = {}
    for workers in (1, 2):
        narrator = tts.OnnxNarrator("jm_kumo", "en-us", 1.0, "cpu", workers=workers)
        speak, in_flight, most = narrator._speak_piece, [0], [0]
        lock = threading.Lock()

        def counted(piece, speak=speak, in_flight=in_flight, most=most, lock=lock):
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            try:
                return speak(piece)
            finally:
                with lock:
                    in_flight[0] -= 1

        monkeypatch.setattr(narrator, "_speak_piece", counted)
        ctx, _ = stage_context(tmp_path / str(workers), "tts", TtsParams(), 0)
        spans, samples = tts.write_narration(ctx, narrator, sentences, tmp_path / f"narration-{workers}.wav")
        results[workers] = (read_wav(tmp_path / f"narration-{workers}.wav")[0], spans, samples, most[0])
    (one, one_spans, one_samples, one_most), (two, two_spans, two_samples, two_most) = results[1], results[2]
    assert (one_most, two_most) == (1, 2), "one worker speaks one piece at a time, two speak two"
    assert one_samples == two_samples and np.array_equal(one, two)
    assert one_spans == two_spans


def test_model_calls_run_side_by_side_only_under_a_roomy_ceiling(tmp_path):
    from aishorts.stages.tts import stage as tts
    from aishorts.stages.common.runtime import thread_share
    from tests.conftest import stage_context

    small, _ = stage_context(tmp_path, "tts", TtsParams(), 500 * 2**20)
    roomy, _ = stage_context(tmp_path, "tts", TtsParams(), 900 * 2**20)
    assert tts.call_workers(small) == 1
    assert tts.call_workers(roomy) == thread_share()

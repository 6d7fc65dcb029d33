"""Timeline stage: narration + matches + candidates -> the edit decision list (Timeline).

Decides what is on screen when: shots follow the narration's sentences (short
ones merged, long ones split), each shot takes a matched candidate at its best
offset, stills get a slow pan or zoom, captions are grouped from the word
timings, and an optional music bed (a bundled track, or the user's own, probed
for sound) is copied into the run directory at the level asked for; the
captions' look (position, size, colours, outline, or none) and the voice's
level are written down for the renderer. It reads
no pixels and encodes nothing: that is the render stage's job. It does not rank
candidates either: that is the match stage's.

Conventions the renderer relies on:
- segments cover [0, duration_s] contiguously, in order;
- `Segment.transition_s` is the crossfade *into* that segment, starting at its
  `start`; the previous segment's picture therefore runs `transition_s` past its
  own `end` (the first segment's is 0);
- a video segment whose source ends early holds its last frame (no looping).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from aishorts.ipc.artifacts import (
    Candidate, Candidates, Caption, CaptionLook, Matches, MusicBed, Narration, Segment, SentenceSpan, Timeline, WordSpan,
)
from aishorts.ipc.files import ArtifactError
from aishorts.ipc.languages import display_width, join_words
from aishorts.ipc.params import FRAME_SIZES, PLATFORMS, PlatformPreset, TimelineParams
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.outputs import copy_file, real_folder
from aishorts.stages.harness import stage_main

Params = TimelineParams

STILL_MOTIONS = ("zoom_in", "pan_left", "zoom_out", "pan_right")
MUSIC_GAIN_DB = -16.0
MUSIC_DUCK_DB = -10.0
CAPTION_MIN_S = 0.6
CAPTION_MAX_CHARS = 20
CAPTION_GAP_FILL_S = 0.3
# Shorts/TikTok/Reels draw their buttons and description over the bottom ~20%
# of the frame; captions sit above that with some room to spare.
CAPTION_SAFE_BOTTOM = 0.28
CAPTION_MARGINS = {"9:16": CAPTION_SAFE_BOTTOM, "1:1": 0.14, "16:9": 0.09}
"""Captions' distance from the bottom, as a fraction of the height: square feed posts and landscape players
cover less of the frame than vertical shorts' buttons."""
CAPTION_TOP_MARGINS = {"9:16": 0.12, "1:1": 0.08, "16:9": 0.07}
"""Captions' distance from the top when they sit there: below the apps' search and camera bar."""
_PHRASE_END = (",", ";", ":", ".", "!", "?", "…", "，", "、", "；", "：", "。", "！", "？", "।")


def run(ctx: StageContext, params: Params, *, tts: Narration, match: Matches, broll: Candidates) -> Timeline:
    preset = PLATFORMS[params.platform]
    check_narration(ctx, tts, preset, params.platform)
    duration = video_duration(tts.duration_s, params.tail_s, params.fps, preset.max_duration_s)
    ctx.progress("checking b-roll files", 0.1)
    library = usable_candidates(ctx, broll)
    spans = plan_spans(tts.sentences, duration, params.min_segment_s, params.max_segment_s)
    segments = assign_shots(spans, match, library, params.transition_s)
    ctx.progress(f"{len(segments)} shots planned", 0.5)
    captions = group_captions(tts.sentences, params.caption_max_words, tts.duration_s)
    music = music_bed(ctx, params, _seed_text(tts))
    ctx.progress("timeline ready", 1.0)
    width, height = FRAME_SIZES[params.aspect]
    return Timeline(
        width=width, height=height, fps=params.fps, duration_s=duration,
        narration_wav=tts.wav, narration_duration_s=tts.duration_s,
        segments=segments, captions=captions, music=music,
        platform=params.platform, max_duration_s=preset.max_duration_s,
        video_bitrate=preset.video_bitrate, audio_bitrate=preset.audio_bitrate,
        caption_margin_v=caption_margin(params, height), caption_look=caption_look(params),
        narration_gain_db=gain_db(params.voice_volume),
    )


def caption_margin(params: Params, height: int) -> int:
    """The captions' distance from their edge: above the apps' buttons at the bottom, below their bar at the top."""
    margins = CAPTION_TOP_MARGINS if params.caption_position == "top" else CAPTION_MARGINS
    return round(height * margins[params.aspect]) if params.caption_position != "center" else 0


def caption_look(params: Params) -> CaptionLook:
    return CaptionLook(show=params.captions, position=params.caption_position, y=params.caption_y,
                       size=params.caption_size, color=params.caption_color, stroke_color=params.caption_stroke_color,
                       stroke_width=params.caption_stroke_width)


SILENT_DB = -120.0
"""The gain of a level of 0: far below what 16-bit or AAC audio can carry."""


def gain_db(factor: float) -> float:
    """A level given as a factor (MoneyPrinterTurbo's volumes: 1.0 as is, 0.5 half the amplitude) in decibels."""
    return round(20 * math.log10(factor), 3) if factor > 0 else SILENT_DB


def check_narration(ctx: StageContext, tts: Narration, preset: PlatformPreset, platform: str) -> None:
    if tts.duration_s <= 0:
        raise StageError("the narration is empty (0 s); rerun the tts stage")
    if tts.duration_s > preset.max_duration_s:
        raise StageError(
            f"the narration lasts {tts.duration_s:.1f} s but {platform} allows at most"
            f" {preset.max_duration_s:.0f} s; shorten the script (fewer words) or raise the speech speed,"
            " then rerun from the script or tts stage"
        )
    if not ctx.path(tts.wav).is_file():
        raise StageError(f"narration audio {tts.wav} is missing from the run directory; rerun the tts stage")


def video_duration(narration_s: float, tail_s: float, fps: int, max_s: float) -> float:
    """Narration plus at most `tail_s`, on a whole frame, never cutting the narration nor passing `max_s`."""
    shortest = math.ceil(narration_s * fps - 1e-6)
    wanted = math.floor(min(narration_s + max(tail_s, 0.0), max_s) * fps + 1e-6)
    return max(shortest, wanted) / fps


@dataclass
class Usable:
    candidate: Candidate
    duration_s: float | None
    """Source length for videos; None for stills."""


def usable_candidates(ctx: StageContext, broll: Candidates) -> dict[str, Usable]:
    """Candidates whose files are inside the run directory and readable, by id."""
    from aishorts.stages.common.media import MediaError, probe

    usable: dict[str, Usable] = {}
    for item in broll.items:
        try:
            path = ctx.path(item.path)
        except ArtifactError as exc:
            ctx.log(f"skipping b-roll {item.id}: {exc}")
            continue
        if not path.is_file():
            ctx.log(f"skipping b-roll {item.id}: {item.path} is missing")
            continue
        if item.media == "still":
            usable[item.id] = Usable(item, None)
            continue
        length = item.duration_s
        if not length:
            try:
                length = probe(path).duration_s
            except MediaError as exc:
                ctx.log(f"skipping b-roll {item.id}: {exc}")
                continue
        if length and length > 0.2:
            usable[item.id] = Usable(item, length)
    if not usable:
        raise StageError(
            f"none of the {len(broll.items)} b-roll candidates has a usable file;"
            " rerun the broll stage (or give it a local folder of clips and stills)"
        )
    return usable


@dataclass
class Span:
    start: float
    end: float
    sentences: list[int] = field(default_factory=list)
    lead: int | None = None

    @property
    def length(self) -> float:
        return self.end - self.start


def plan_spans(sentences: list[SentenceSpan], duration: float, min_s: float, max_s: float) -> list[Span]:
    """Shot boundaries: one span per sentence, cut in the pauses, short ones merged, long ones split."""
    ordered = sorted(sentences, key=lambda s: s.start)
    spans = _sentence_spans(ordered, duration)
    spans = _merge_short(spans, min_s)
    spans = _split_long(spans, ordered, min_s, max_s)
    _assign_leads(spans, ordered)
    return spans


def _sentence_spans(ordered: list[SentenceSpan], duration: float) -> list[Span]:
    if not ordered:
        return [Span(0.0, duration)]
    cuts = [0.0]
    for previous, current in zip(ordered, ordered[1:]):
        cut = (previous.end + current.start) / 2 if current.start >= previous.end else current.start
        cuts.append(min(max(cut, cuts[-1]), duration))
    cuts.append(duration)
    return [Span(a, b, [s.index]) for (a, b), s in zip(zip(cuts, cuts[1:]), ordered)]


def _merge_short(spans: list[Span], min_s: float) -> list[Span]:
    spans = list(spans)
    while len(spans) > 1:
        shortest = min(range(len(spans)), key=lambda i: spans[i].length)
        if spans[shortest].length >= min_s:
            break
        if shortest == 0:
            other = 1
        elif shortest == len(spans) - 1:
            other = shortest - 1
        else:
            other = min(shortest - 1, shortest + 1, key=lambda i: spans[i].length)
        a, b = sorted((shortest, other))
        spans[a:b + 1] = [Span(spans[a].start, spans[b].end, spans[a].sentences + spans[b].sentences)]
    return spans


def _split_long(spans: list[Span], ordered: list[SentenceSpan], min_s: float, max_s: float) -> list[Span]:
    word_starts = sorted(w.start for s in ordered for w in s.words)
    result: list[Span] = []
    for span in spans:
        pieces = math.ceil(span.length / max_s - 1e-9) if max_s > 0 else 1
        if pieces <= 1 or span.length / pieces < min_s:
            result.append(span)
            continue
        cuts = [span.start]
        for k in range(1, pieces):
            ideal = span.start + span.length * k / pieces
            cuts.append(_snap_to_word(ideal, word_starts, cuts[-1] + min_s, span.end - min_s * (pieces - k)))
        cuts.append(span.end)
        result.extend(Span(a, b, list(span.sentences)) for a, b in zip(cuts, cuts[1:]))
    return result


def _snap_to_word(ideal: float, word_starts: list[float], low: float, high: float, reach: float = 0.6) -> float:
    """Move a cut onto the nearest word start, so shots change between words, if one is close."""
    near = [w for w in word_starts if abs(w - ideal) <= reach and low <= w <= high]
    return min(near, key=lambda w: abs(w - ideal)) if near else ideal


def _assign_leads(spans: list[Span], ordered: list[SentenceSpan]) -> None:
    """Each span shows the match of the sentence it overlaps most."""
    by_index = {s.index: s for s in ordered}
    for span in spans:
        if span.sentences:
            span.lead = max(span.sentences, key=lambda i: _overlap(span, by_index[i]))


def _overlap(span: Span, sentence: SentenceSpan) -> float:
    return min(span.end, sentence.end) - max(span.start, sentence.start)


@dataclass
class _Option:
    usable: Usable
    offset_s: float


@dataclass
class _Shot:
    candidate_id: str
    offset_s: float
    length_s: float


def assign_shots(spans: list[Span], matches: Matches, library: dict[str, Usable], transition_s: float) -> list[Segment]:
    """Pick a candidate and source offset for every span (no loops; stills move)."""
    transitions = _transitions(spans, transition_s)
    segments: list[Segment] = []
    used: dict[str, float] = {}
    previous: _Shot | None = None
    still_count = 0
    for i, span in enumerate(spans):
        need = span.length + (transitions[i + 1] if i + 1 < len(spans) else 0.0)
        options = _ranked_options(span, i, matches, library)
        shot = _choose(options, need, previous, used, library)
        used[shot.candidate_id] = max(used.get(shot.candidate_id, 0.0), shot.offset_s + shot.length_s)
        candidate = library[shot.candidate_id].candidate
        motion = "none"
        if candidate.media == "still":
            motion = STILL_MOTIONS[still_count % len(STILL_MOTIONS)]
            still_count += 1
        segments.append(Segment(
            start=round(span.start, 3), end=round(span.end, 3), candidate_id=candidate.id, path=candidate.path,
            media=candidate.media, source_offset_s=round(shot.offset_s, 3), motion=motion,
            transition_s=round(transitions[i], 3), credits=candidate.credits,
        ))
        previous = shot
    segments[-1].end = spans[-1].end
    return segments


def _transitions(spans: list[Span], transition_s: float) -> list[float]:
    """Crossfade into each span: none into the first, never more than a quarter of either side."""
    result = [0.0]
    for before, after in zip(spans, spans[1:]):
        result.append(max(0.0, min(transition_s, before.length / 4, after.length / 4)))
    return result


def _ranked_options(span: Span, position: int, matches: Matches, library: dict[str, Usable]) -> list[_Option]:
    """The span's sentence's ranking (chosen first), usable candidates only; every candidate as a fallback."""
    by_sentence = {m.sentence_index: m for m in matches.sentences}
    found = by_sentence.get(span.lead) if span.lead is not None else None
    if found is None and matches.sentences:
        found = matches.sentences[min(position, len(matches.sentences) - 1)]
    options: list[_Option] = []
    if found is not None:
        pairs = [(found.chosen_id, found.offset_s)] + [(r.candidate_id, r.offset_s) for r in found.ranked]
        seen: set[str] = set()
        for cid, offset in pairs:
            if cid in library and cid not in seen:
                seen.add(cid)
                options.append(_Option(library[cid], offset))
    ids = sorted(library)
    rotated = ids[position % len(ids):] + ids[:position % len(ids)]
    options += [_Option(library[cid], 0.0) for cid in rotated if all(o.usable.candidate.id != cid for o in options)]
    return options


def _choose(options: list[_Option], need: float, previous: _Shot | None, used: dict[str, float],
            library: dict[str, Usable]) -> _Shot:
    """Best ranked candidate that covers the shot and is not the previous one; then fallbacks in order."""
    prev_id = previous.candidate_id if previous else None
    fresh = [o for o in options if o.usable.candidate.id != prev_id]
    for option in fresh:
        if _covers(option.usable, need):
            return _Shot(option.usable.candidate.id, _offset(option, need, used), need)
    if previous is not None:
        source = library[prev_id]
        later = previous.offset_s + previous.length_s
        if source.duration_s is not None and later + need <= source.duration_s:
            return _Shot(prev_id, later, need)
    if fresh:
        # Every other candidate is a video shorter than the shot: it holds its last frame.
        return _Shot(fresh[0].usable.candidate.id, 0.0, need)
    return _Shot(options[0].usable.candidate.id, _offset(options[0], need, used), need)


def _covers(usable: Usable, need: float) -> bool:
    return usable.duration_s is None or usable.duration_s >= need


def _offset(option: _Option, need: float, used: dict[str, float]) -> float:
    """The recommended offset, moved past footage already shown when the clip is long enough, clamped to cover."""
    length = option.usable.duration_s
    if length is None:
        return 0.0
    offset = option.offset_s
    already = used.get(option.usable.candidate.id)
    if already is not None and offset < already and already + need <= length:
        offset = already
    return min(max(offset, 0.0), max(length - need, 0.0))


def group_captions(sentences: list[SentenceSpan], max_words: int, narration_s: float) -> list[Caption]:
    """A few words at a time, never across a sentence end, shown at least CAPTION_MIN_S when there is room."""
    groups: list[list[WordSpan]] = []
    for sentence in sorted(sentences, key=lambda s: s.start):
        words = _timed_words(sentence, narration_s)
        for phrase in _phrases(words):
            groups.extend(_chunks(phrase, max(1, max_words)))
    captions = [Caption(g[0].start, g[-1].end, g) for g in groups if g]
    for current, following in zip(captions, captions[1:] + [None]):
        limit = following.start if following else narration_s
        end = max(current.end, min(current.start + CAPTION_MIN_S, limit))
        if following and following.start - end < CAPTION_GAP_FILL_S:
            end = following.start
        current.end = round(min(max(end, current.start), limit), 3)
    return captions


def _timed_words(sentence: SentenceSpan, narration_s: float) -> list[WordSpan]:
    """The sentence's word timings clamped to the narration; spread evenly when TTS gave none."""
    def clamp(t: float) -> float:
        return round(min(max(t, 0.0), narration_s), 3)

    words = [w for w in sentence.words if w.text.strip()]
    if not words:
        texts = sentence.text.split()
        step = (sentence.end - sentence.start) / max(len(texts), 1)
        words = [WordSpan(t, sentence.start + k * step, sentence.start + (k + 1) * step) for k, t in enumerate(texts)]
    timed = []
    for word in words:
        start = clamp(word.start)
        timed.append(WordSpan(word.text.strip(), start, max(start, clamp(word.end))))
    return timed


def _phrases(words: list[WordSpan]) -> list[list[WordSpan]]:
    phrases: list[list[WordSpan]] = [[]]
    for word in words:
        phrases[-1].append(word)
        if word.text.endswith(_PHRASE_END):
            phrases.append([])
    return [p for p in phrases if p]


def _chunks(words: list[WordSpan], max_words: int) -> list[list[WordSpan]]:
    """Balanced groups (2+2 rather than 3+1), each short enough to read at a glance."""
    count = math.ceil(len(words) / max_words)
    while count < len(words) and any(
        caption_width(chunk) > CAPTION_MAX_CHARS for chunk in _even_split(words, count)
    ):
        count += 1
    return _even_split(words, count)


def caption_width(words: list[WordSpan]) -> int:
    """How wide the words are on screen, in columns of a Latin letter: a CJK character counts two."""
    return display_width(join_words([w.text for w in words]))


def _even_split(words: list[WordSpan], count: int) -> list[list[WordSpan]]:
    size, extra = divmod(len(words), count)
    chunks, start = [], 0
    for k in range(count):
        end = start + size + (1 if k < extra else 0)
        chunks.append(words[start:end])
        start = end
    return chunks


def music_tracks() -> dict[str, list[Path]]:
    """The bundled mood tracks of immich-memories-music, by mood (its folder names)."""
    try:
        from immich_memories_music import tracks_dir
    except ImportError:
        raise StageError(
            "background music needs the immich-memories-music package; install it or turn music off"
        ) from None
    root = tracks_dir()
    moods = {d.name: sorted(p for p in d.iterdir() if p.suffix in {".opus", ".ogg", ".mp3", ".m4a", ".wav"})
             for d in sorted(root.iterdir()) if d.is_dir()}
    return {mood: files for mood, files in moods.items() if files}


def music_bed(ctx: StageContext, params: Params, seed_text: str) -> MusicBed | None:
    """The music under the voice: none when off or at level 0; the user's own track, else a bundled one."""
    if not params.music or params.music_volume == 0:
        return None
    bed = own_music(ctx, Path(params.music_file)) if params.music_file else pick_music(ctx, params.music_mood, seed_text)
    if params.music_volume is not None:
        bed.gain_db = gain_db(params.music_volume)
    return bed


OWN_MUSIC_SUFFIXES = (".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wav", ".flac", ".webm", ".mp4")


def own_music(ctx: StageContext, source: Path) -> MusicBed:
    """The user's track, checked to hold audio, copied into the run directory (the run keeps what it used)."""
    from aishorts.stages.common.media import MediaError, probe

    if source.suffix.lower() not in OWN_MUSIC_SUFFIXES:
        raise StageError(f"music file {source.name}: give an audio file ({', '.join(OWN_MUSIC_SUFFIXES)})")
    if not source.is_file():
        raise StageError(f"music file {source} is missing; give the track again or turn music off")
    try:
        info = probe(source)
    except MediaError as exc:
        raise StageError(f"music file {source.name} is not readable audio: {exc}") from None
    if info.audio is None or not info.duration_s:
        raise StageError(f"music file {source.name} holds no audio; give a music track (mp3, m4a, ogg, wav)")
    destination = copy_file(source, real_folder(ctx.out_dir / "music") / f"own{source.suffix.lower()}")
    return MusicBed(path=ctx.rel(destination), title=f"{source.name} (your file)", gain_db=MUSIC_GAIN_DB,
                    duck_db=MUSIC_DUCK_DB)


def pick_music(ctx: StageContext, mood: str | None, seed_text: str) -> MusicBed:
    """One track (of `mood`, or of any mood), chosen by a hash of the narration, copied into the run dir."""
    tracks = music_tracks()
    if not tracks:
        raise StageError("immich-memories-music ships no tracks here; reinstall it or turn music off")
    if mood is not None and mood not in tracks:
        raise StageError(f"no music for mood {mood!r}; available moods: {', '.join(tracks)}")
    pool = [(m, p) for m in ([mood] if mood else list(tracks)) for p in tracks[m]]
    pick_mood, source = pool[int(hashlib.sha256(seed_text.encode()).hexdigest()[:12], 16) % len(pool)]
    destination = copy_file(source, real_folder(ctx.out_dir / "music") / source.name)
    return MusicBed(
        path=ctx.rel(destination), title=f"{source.stem} ({pick_mood}; immich-memories-music, MIT)",
        gain_db=MUSIC_GAIN_DB, duck_db=MUSIC_DUCK_DB,
    )


def _seed_text(tts: Narration) -> str:
    return " ".join(s.text for s in tts.sentences) or tts.wav


if __name__ == "__main__":
    stage_main(run, Params)

"""The timeline stage: narration + matches + candidates become an edit decision list.

Inputs are real files made with ffmpeg (a WAV of the narration's length, small
test-pattern clips, PNG stills); the narration's sentence and word spans are
made up but consistent with the WAV. The checks are the timeline's promises to
the renderer: contiguous shots of a watchable length, clips at their best
offset and never looped, moving stills, readable captions inside the
narration, music copied into the run directory, platform limits enforced.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aishorts.ipc.artifacts import (
    Candidate, Candidates, Matches, Narration, RankedCandidate, SentenceMatch, SentenceSpan, Timeline, WordSpan,
)
from aishorts.ipc.files import resolve_in_run
from aishorts.ipc.params import PLATFORMS, TimelineParams
from aishorts.stages.common.context import StageError
from aishorts.stages.timeline.stage import CAPTION_MIN_S, music_tracks

WORD_S = 0.32
PAUSE_S = 0.35

SENTENCES = [
    "Octopuses have three hearts.",
    "Wow.",
    "Two pump blood to the gills while the third one keeps the rest of the body going all day long without a rest.",
    "Their blood is blue, because it carries copper instead of iron.",
    "That is why they tire so quickly when they swim.",
    "Follow for more.",
]


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=60)


def make_narration(run_dir: Path, sentences: list[str], lead_in: float = 0.2, tail: float = 0.3) -> Narration:
    """A WAV as long as the made-up word timings say, with one word every WORD_S and a pause between sentences."""
    spans, t = [], lead_in
    for index, text in enumerate(sentences):
        words = []
        for word in text.split():
            words.append(WordSpan(word, round(t, 3), round(t + WORD_S * 0.9, 3)))
            t += WORD_S
        spans.append(SentenceSpan(index, text, words[0].start, words[-1].end, words))
        t += PAUSE_S
    duration = round(t - PAUSE_S + tail, 3)
    wav = run_dir / "tts" / "narration.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"sine=f=200:sample_rate=8000:duration={duration}", "-ac", "1", str(wav))
    return Narration(wav="tts/narration.wav", sample_rate=8000, duration_s=duration, sentences=spans,
                     voice="test", language="en-us", speed=1.0, backend="synthetic")


def make_clip(path: Path, seconds: float, size: str = "320x180") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))


def make_still(path: Path, size: str = "320x240") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"smptebars=size={size}:rate=1", "-frames:v", "1", str(path))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """Clips and stills made once; each test copies them into its own run directory."""
    folder = tmp_path_factory.mktemp("broll")
    make_clip(folder / "long.mp4", 20.0)
    make_clip(folder / "medium.mp4", 8.0, "180x320")
    make_clip(folder / "short.mp4", 1.0)
    make_still(folder / "bars.png")
    make_still(folder / "square.png", "200x200")
    return folder


def candidates(run_dir: Path, media: Path, ids: tuple[str, ...] = ("long", "medium", "short", "bars", "square"),
               declare_durations: bool = True) -> Candidates:
    files = {"long": ("long.mp4", 20.0), "medium": ("medium.mp4", 8.0), "short": ("short.mp4", 1.0),
             "bars": ("bars.png", None), "square": ("square.png", None)}
    items = []
    for cid in ids:
        name, seconds = files[cid]
        target = run_dir / "broll" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((media / name).read_bytes())
        items.append(Candidate(
            id=cid, media="still" if seconds is None else "video", path=f"broll/{name}", title=cid,
            duration_s=seconds if declare_durations else None,
        ))
    return Candidates(source="local", source_reason="test files", items=items)


def matches_for(narration: Narration, rankings: dict[int, list[tuple[str, float]]]) -> Matches:
    """Each sentence's ranking: (candidate id, best offset), best first."""
    sentences = []
    for sentence in narration.sentences:
        ranked = rankings[sentence.index]
        sentences.append(SentenceMatch(
            sentence_index=sentence.index, text=sentence.text,
            ranked=[RankedCandidate(cid, 1.0 - 0.1 * k, offset) for k, (cid, offset) in enumerate(ranked)],
            chosen_id=ranked[0][0], offset_s=ranked[0][1],
        ))
    return Matches(scorer="text", scorer_reason="test", model="none", device="cpu", sentences=sentences)


def rotating_rankings(narration: Narration) -> dict[int, list[tuple[str, float]]]:
    order = ["long", "bars", "medium", "square", "short"]
    return {s.index: [(order[(s.index + k) % 5], 2.0) for k in range(5)] for s in narration.sentences}


def run_timeline(run_stage_inline, run_dir: Path, narration: Narration, matches: Matches, broll: Candidates,
                 params: TimelineParams | None = None) -> Timeline:
    timeline, _events = run_stage_inline(run_dir, "timeline", params or TimelineParams(),
                                         tts=narration, match=matches, broll=broll)
    return timeline


@pytest.fixture
def standard(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    narration = make_narration(run_dir, SENTENCES)
    broll = candidates(run_dir, media)
    timeline = run_timeline(run_stage_inline, run_dir, narration, matches_for(narration, rotating_rankings(narration)),
                            broll)
    return run_dir, narration, broll, timeline


def test_segments_cover_the_video_end_to_end_with_no_shot_too_short(standard):
    _run_dir, _narration, _broll, timeline = standard
    params = TimelineParams()
    segments = timeline.segments
    assert segments[0].start == 0.0
    assert segments[-1].end == pytest.approx(timeline.duration_s, abs=1e-6)
    for before, after in zip(segments, segments[1:]):
        assert after.start == before.end
    lengths = [s.end - s.start for s in segments]
    assert min(lengths) >= params.min_segment_s
    # Split points snap onto a nearby word start, so a shot may run a little past max_segment_s.
    assert max(lengths) <= params.max_segment_s + 0.6
    assert segments[0].transition_s == 0.0
    assert all(0.0 <= s.transition_s <= params.transition_s for s in segments)


def test_a_long_sentence_becomes_several_different_shots(standard):
    _run_dir, narration, _broll, timeline = standard
    long_sentence = narration.sentences[2]
    assert long_sentence.end - long_sentence.start > 6.0
    inside = [s for s in timeline.segments if s.start >= long_sentence.start - 0.5 and s.end <= long_sentence.end + 0.5]
    assert len(inside) >= 2
    for a, b in zip(inside, inside[1:]):
        assert (a.candidate_id, a.source_offset_s) != (b.candidate_id, b.source_offset_s)


def test_a_one_word_sentence_is_merged_into_a_neighbour(standard):
    _run_dir, narration, _broll, timeline = standard
    wow = narration.sentences[1]
    assert wow.end - wow.start < 1.0
    assert not any(s.start >= wow.start - 0.4 and s.end <= wow.end + 0.4 for s in timeline.segments)


def test_video_length_is_the_narration_plus_at_most_the_tail(standard):
    _run_dir, narration, _broll, timeline = standard
    params = TimelineParams()
    assert timeline.narration_duration_s == narration.duration_s
    assert narration.duration_s <= timeline.duration_s <= narration.duration_s + params.tail_s + 1 / params.fps
    assert round(timeline.duration_s * timeline.fps, 6).is_integer()
    assert timeline.narration_wav == narration.wav


def test_platform_preset_and_frame_are_recorded(standard):
    _run_dir, _narration, _broll, timeline = standard
    preset = PLATFORMS["shorts"]
    assert (timeline.width, timeline.height, timeline.fps) == (1080, 1920, 30)
    assert (timeline.video_bitrate, timeline.audio_bitrate, timeline.max_duration_s) == (
        preset.video_bitrate, preset.audio_bitrate, preset.max_duration_s)
    # Captions sit above the bottom ~20% where Shorts/TikTok/Reels draw their own buttons.
    assert timeline.caption_margin_v >= 0.2 * timeline.height


def test_clips_start_at_their_best_offset_and_cover_their_shot_without_looping(standard):
    _run_dir, _narration, broll, timeline = standard
    lengths = {c.id: c.duration_s for c in broll.items}
    segments = timeline.segments
    for i, segment in enumerate(segments):
        if segment.media != "video":
            continue
        shown = segment.end - segment.start + (segments[i + 1].transition_s if i + 1 < len(segments) else 0.0)
        assert segment.source_offset_s >= 0.0
        assert segment.source_offset_s + shown <= lengths[segment.candidate_id] + 1e-3
    # The 1 s clip can cover no shot here, so it is never used although it is ranked.
    assert "short" not in {s.candidate_id for s in segments}


def test_recommended_offset_is_used_when_it_fits_and_clamped_when_it_does_not(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    narration = make_narration(run_dir, ["One two three four five six seven.", "Eight nine ten eleven twelve."])
    rankings = {0: [("long", 3.0), ("bars", 0.0)], 1: [("medium", 7.5), ("square", 0.0)]}
    timeline = run_timeline(run_stage_inline, run_dir, narration, matches_for(narration, rankings),
                            candidates(run_dir, media, declare_durations=False))
    first, second = timeline.segments
    assert (first.candidate_id, first.source_offset_s) == ("long", 3.0)
    assert second.candidate_id == "medium"
    shown = second.end - second.start
    assert second.source_offset_s == pytest.approx(8.0 - shown, abs=0.01)


def test_a_clip_shorter_than_its_shot_gives_way_to_the_next_ranked_candidate(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    narration = make_narration(run_dir, ["A single sentence that lasts about three seconds."])
    rankings = {0: [("short", 0.0), ("square", 0.0)]}
    timeline = run_timeline(run_stage_inline, run_dir, narration, matches_for(narration, rankings),
                            candidates(run_dir, media, ("short", "square")))
    assert [s.candidate_id for s in timeline.segments] == ["square"]


def test_stills_pan_or_zoom_and_consecutive_stills_move_differently(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    narration = make_narration(run_dir, SENTENCES)
    stills_only = {s.index: [("bars", 0.0), ("square", 0.0)] for s in narration.sentences}
    timeline = run_timeline(run_stage_inline, run_dir, narration, matches_for(narration, stills_only),
                            candidates(run_dir, media, ("bars", "square")))
    assert all(s.media == "still" and s.motion != "none" for s in timeline.segments)
    for a, b in zip(timeline.segments, timeline.segments[1:]):
        assert a.motion != b.motion
        assert a.candidate_id != b.candidate_id


def test_captions_group_a_few_words_inside_their_sentence_and_the_narration(standard):
    _run_dir, narration, _broll, timeline = standard
    params = TimelineParams()
    captions = timeline.captions
    assert [w.text for c in captions for w in c.words] == [w.text for s in narration.sentences for w in s.words]
    sentence_of = {(w.text, w.start): s.index for s in narration.sentences for w in s.words}
    for caption in captions:
        assert 1 <= len(caption.words) <= params.caption_max_words
        assert len({sentence_of[(w.text, w.start)] for w in caption.words}) == 1
        assert 0.0 <= caption.start < caption.end <= narration.duration_s
        assert caption.start == caption.words[0].start
        assert caption.end >= min(caption.words[-1].end, narration.duration_s) - 1e-6
    for before, after in zip(captions, captions[1:]):
        assert before.end <= after.start
        if after.start - before.start >= CAPTION_MIN_S:
            assert before.end - before.start >= CAPTION_MIN_S - 1e-6


def test_music_is_a_bundled_track_copied_into_the_run_directory(standard):
    run_dir, _narration, _broll, timeline = standard
    assert timeline.music is not None
    copied = resolve_in_run(run_dir, timeline.music.path)
    assert copied.is_file()
    originals = [p for paths in music_tracks().values() for p in paths]
    assert any(copied.read_bytes() == p.read_bytes() for p in originals if p.name == copied.name)
    assert timeline.music.duck_db < 0 and timeline.music.gain_db < 0


def test_music_mood_is_honoured_and_an_unknown_mood_is_refused(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    narration = make_narration(run_dir, SENTENCES[:2])
    matches = matches_for(narration, rotating_rankings(narration))
    broll = candidates(run_dir, media)
    mood = sorted(music_tracks())[0]
    timeline = run_timeline(run_stage_inline, run_dir, narration, matches, broll, TimelineParams(music_mood=mood))
    assert Path(timeline.music.path).name in {p.name for p in music_tracks()[mood]}
    with pytest.raises(StageError, match="available moods"):
        run_timeline(run_stage_inline, run_dir, narration, matches, broll, TimelineParams(music_mood="polka"))
    silent = run_timeline(run_stage_inline, run_dir, narration, matches, broll, TimelineParams(music=False))
    assert silent.music is None


def test_narration_longer_than_the_platform_allows_is_refused(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    limit = PLATFORMS["shorts"].max_duration_s
    words = " ".join(["word"] * int(limit / WORD_S + 5)) + "."
    narration = make_narration(run_dir, [words])
    assert narration.duration_s > limit
    with pytest.raises(StageError, match=r"allows at most 60 s"):
        run_timeline(run_stage_inline, run_dir, narration, matches_for(narration, {0: [("long", 0.0)]}),
                     candidates(run_dir, media, ("long",)))
    # The same narration fits Reels' 90 s.
    timeline = run_timeline(run_stage_inline, run_dir, narration, matches_for(narration, {0: [("long", 0.0)]}),
                            candidates(run_dir, media, ("long",)), TimelineParams(platform="reels", music=False))
    assert timeline.duration_s <= PLATFORMS["reels"].max_duration_s


def test_unusable_inputs_are_refused_with_a_clear_message(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    narration = make_narration(run_dir, SENTENCES[:1])
    matches = matches_for(narration, {0: [("long", 0.0)]})
    broll = candidates(run_dir, media, ("long",))
    with pytest.raises(StageError, match=r"invalid parameters \(Invalid enum value 'vine' - at `\$.platform`\)"):
        run_timeline(run_stage_inline, run_dir, narration, matches, broll, TimelineParams(platform="vine"))
    (run_dir / "broll" / "long.mp4").unlink()
    with pytest.raises(StageError, match="no usable|none of the"):
        run_timeline(run_stage_inline, run_dir, narration, matches, broll)


def test_a_narration_shorter_than_one_shot_is_one_segment(tmp_path, media, run_stage_inline):
    run_dir = tmp_path / "run"
    narration = make_narration(run_dir, ["Hi.", "Bye."], lead_in=0.05, tail=0.05)
    assert narration.duration_s < TimelineParams().min_segment_s
    timeline = run_timeline(run_stage_inline, run_dir, narration, matches_for(narration, rotating_rankings(narration)),
                            candidates(run_dir, media))
    assert len(timeline.segments) == 1
    assert (timeline.segments[0].start, timeline.segments[0].end) == (0.0, timeline.duration_s)

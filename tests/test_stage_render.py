"""The render stage: a timeline becomes final.mp4, captions.srt/.ass and thumbnail.jpg.

The timeline is written by hand (one landscape clip, then one zooming still,
a crossfade between them, captions and a bundled music track) over real files
made with ffmpeg. The clip and the still are grey on purpose: the only
saturated yellow in the output can then come from the highlighted caption
word. Outputs are checked with ffmpeg itself: size, rate, codecs, length,
decoded pixels and audio levels.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import msgspec
import numpy as np
import pytest

from aishorts.ipc.artifacts import Caption, Credit, MusicBed, Segment, Timeline, WordSpan
from aishorts.ipc.files import resolve_in_run
from aishorts.ipc.params import PLATFORMS, RenderParams
from aishorts.stages.common.context import StageError
from aishorts.stages.common.media import probe
from aishorts.stages.timeline.stage import music_tracks

W, H, FPS = 1080, 1920, 30
NARRATION_S = 5.2
DURATION_S = 5.5
# Two phrases with a silent gap between them, where only the music plays.
PHRASES = [(0.2, "Old test patterns fill the screen"), (3.2, "then a still slowly zooms in")]
GAP = (2.2, 3.2)
WORD_S = 0.33


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=120,
                          capture_output=True).stdout


def words() -> list[WordSpan]:
    spans = []
    for start, text in PHRASES:
        for k, word in enumerate(text.split()):
            spans.append(WordSpan(word, round(start + k * WORD_S, 3), round(start + (k + 0.85) * WORD_S, 3)))
    return spans


OCTOPUS_CREDIT = Credit("octopus", "openmoji", "1F419.svg", "CC BY-SA 4.0",
                        "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0")


def make_inputs(run_dir: Path) -> Timeline:
    """Narration with a pause, a grey landscape clip, a grey still, a music track: and the timeline over them."""
    (run_dir / "tts").mkdir(parents=True)
    (run_dir / "broll").mkdir()
    (run_dir / "timeline" / "music").mkdir(parents=True)
    voice_on = "+".join(f"between(t,{start},{start + len(text.split()) * WORD_S})" for start, text in PHRASES)
    # sine is -18 dBFS at full scale: x4 makes a voice peaking near -6 dBFS.
    ffmpeg("-f", "lavfi", "-i", f"sine=f=300:sample_rate=24000:duration={NARRATION_S}",
           "-af", f"volume='4*({voice_on})':eval=frame", "-ac", "1", str(run_dir / "tts" / "narration.wav"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=6", "-vf", "hue=s=0",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(run_dir / "broll" / "land.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=800x600:rate=1", "-vf", "hue=s=0", "-frames:v", "1",
           str(run_dir / "broll" / "still.png"))
    track = sorted(p for paths in music_tracks().values() for p in paths)[0]
    shutil.copyfile(track, run_dir / "timeline" / "music" / track.name)
    spans = words()
    captions = [Caption(spans[i].start, spans[min(i + 2, len(spans) - 1)].end, spans[i:i + 3])
                for i in range(0, len(spans), 3)]
    preset = PLATFORMS["shorts"]
    return Timeline(
        width=W, height=H, fps=FPS, duration_s=DURATION_S, narration_wav="tts/narration.wav",
        narration_duration_s=NARRATION_S,
        segments=[
            Segment(start=0.0, end=2.4, candidate_id="land", path="broll/land.mp4", media="video",
                    source_offset_s=1.0),
            Segment(start=2.4, end=DURATION_S, candidate_id="still", path="broll/still.png", media="still",
                    motion="zoom_in", transition_s=0.25, credits=[OCTOPUS_CREDIT, OCTOPUS_CREDIT]),
        ],
        captions=captions,
        music=MusicBed(path=f"timeline/music/{track.name}", title=track.stem, gain_db=-16.0, duck_db=-10.0),
        platform="shorts", max_duration_s=preset.max_duration_s, video_bitrate=preset.video_bitrate,
        audio_bitrate=preset.audio_bitrate, caption_margin_v=round(0.28 * H),
    )


_RENDERS: dict[str, tuple] = {}


@pytest.fixture
def rendered(run_stage_inline, tmp_path_factory):
    """rendered(renderer) -> (run_dir, timeline, Render, progress events); each renderer runs once per module."""

    def get(renderer: str):
        if renderer not in _RENDERS:
            run_dir = tmp_path_factory.mktemp(f"render-{renderer}")
            timeline = make_inputs(run_dir)
            result, events = run_stage_inline(run_dir, "render", RenderParams(renderer=renderer), timeline=timeline)
            _RENDERS[renderer] = (run_dir, timeline, result, events)
        return _RENDERS[renderer]

    return get


def frame_at(video: Path, t: float, pix_fmt: str = "gray") -> np.ndarray:
    raw = ffmpeg("-ss", f"{t}", "-i", str(video), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-")
    channels = 3 if pix_fmt == "rgb24" else 1
    return np.frombuffer(raw, np.uint8).reshape(H, W, channels).astype(np.int32)


def yellow_mask(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 190) & (g > 150) & (b < 100) & (r - b > 120)


def audio_rms_db(video: Path, start: float, end: float) -> float:
    raw = ffmpeg("-ss", f"{start}", "-t", f"{end - start}", "-i", str(video), "-ac", "1", "-ar", "48000",
                 "-f", "f32le", "-")
    samples = np.frombuffer(raw, np.float32)
    return float(20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) + 1e-12))


def check_layout(video: Path, timeline: Timeline) -> None:
    info = probe(video)
    assert (info.video.codec, info.video.pix_fmt) == ("h264", "yuv420p")
    assert (info.video.width, info.video.height) == (W, H)
    assert info.video.fps == pytest.approx(FPS)
    assert info.audio is not None and info.audio.codec == "aac" and info.audio.sample_rate == 48000
    assert [s.kind for s in info.streams] == ["video", "audio"]
    assert info.duration_s == pytest.approx(timeline.duration_s, abs=0.15)


def test_ffmpeg_render_is_a_vertical_h264_aac_video_as_long_as_the_timeline(rendered):
    run_dir, timeline, result, _events = rendered("ffmpeg")
    video = resolve_in_run(run_dir, result.video)
    assert video == run_dir / "render" / "final.mp4"
    check_layout(video, timeline)
    assert (result.width, result.height, result.fps, result.has_audio) == (W, H, FPS, True)
    assert result.renderer == "ffmpeg" and result.size_bytes == video.stat().st_size
    head = video.read_bytes()[:1 << 16]
    assert 0 <= head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head, "faststart puts the index first"
    assert not (run_dir / "render" / "final.partial.mp4").exists()


def test_frames_show_the_footage_and_the_shots_differ(rendered):
    run_dir, _timeline, result, _events = rendered("ffmpeg")
    video = resolve_in_run(run_dir, result.video)
    clip, still = frame_at(video, 1.0), frame_at(video, 4.5)
    assert clip.var() > 100 and still.var() > 100
    assert np.abs(clip - still).mean() > 5


def test_the_spoken_word_is_highlighted_in_captions_clear_of_the_platform_ui(rendered):
    run_dir, timeline, result, _events = rendered("ffmpeg")
    video = resolve_in_run(run_dir, result.video)
    speaking = frame_at(video, 0.5, "rgb24")
    lit = yellow_mask(speaking)
    ui_top = int(0.8 * H)
    assert lit[:ui_top].sum() > 200
    assert lit[ui_top:].sum() == 0
    rows = np.nonzero(lit.any(axis=1))[0]
    assert rows.max() <= H - timeline.caption_margin_v + 10
    assert yellow_mask(frame_at(video, 2.7, "rgb24")).sum() == 0, "no caption in the pause"


def test_caption_files_are_timed_inside_the_narration(rendered):
    run_dir, timeline, result, _events = rendered("ffmpeg")
    srt = resolve_in_run(run_dir, result.srt).read_text()
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", srt)
    assert len(stamps) == len(timeline.captions)
    for stamp in stamps:
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, stamp)
        start, end = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert 0 <= start < end <= timeline.narration_duration_s
    assert [c.text for c in timeline.captions] == re.findall(r"\d\n[\d:,]+ --> [\d:,]+\n(.+)\n", srt)
    ass = resolve_in_run(run_dir, result.ass).read_text()
    style = re.search(r"^Style: Caption,([^,]+),(\d+),.*$", ass, re.MULTILINE).group(0).split(",")
    assert style[7] == "-1", "bold"
    assert (style[18], style[21]) == ("2", str(timeline.caption_margin_v)), "bottom centre, above the UI"
    events = re.findall(r"^Dialogue: 0,(\d):(\d\d):(\d\d\.\d\d),(\d):(\d\d):(\d\d\.\d\d),Caption,,0,0,0,,(.*)$",
                        ass, re.MULTILINE)
    assert len(events) == sum(len(c.words) for c in timeline.captions), "one event per spoken word"
    for *times, text in events:
        start = int(times[0]) * 3600 + int(times[1]) * 60 + float(times[2])
        end = int(times[3]) * 3600 + int(times[4]) * 60 + float(times[5])
        assert 0 <= start < end <= timeline.narration_duration_s + 0.005
        assert text.count("\\1c") == 2


def test_the_pictures_shown_are_credited_once_beside_the_short(rendered):
    run_dir, _, result, _ = rendered("ffmpeg")
    assert result.credits == "render/credits.txt"
    text = (run_dir / "credits.txt").read_text()
    assert text.count("- octopus: openmoji 1F419.svg, CC BY-SA 4.0") == 1
    assert OCTOPUS_CREDIT.attribution in text and "description" in text


def test_a_short_without_credited_pictures_has_no_credits_file(tmp_path):
    from aishorts.stages.render.stage import write_credits

    timeline = make_timeline_stub()
    assert write_credits(tmp_path / "credits.txt", timeline) is None and not (tmp_path / "credits.txt").exists()


def test_thumbnail_is_a_full_size_frame(rendered):
    run_dir, _timeline, result, _events = rendered("ffmpeg")
    thumbnail = resolve_in_run(run_dir, result.thumbnail)
    info = probe(thumbnail)
    assert info.video.codec == "mjpeg" and (info.video.width, info.video.height) == (W, H)


def test_music_plays_quietly_in_the_pause_and_the_voice_leads(rendered):
    run_dir, _timeline, result, _events = rendered("ffmpeg")
    video = resolve_in_run(run_dir, result.video)
    voice = audio_rms_db(video, 0.5, 1.5)
    pause = audio_rms_db(video, GAP[0] + 0.3, GAP[1] - 0.3)
    assert voice > -15
    assert -60 < pause < voice - 10


def test_progress_is_reported_up_to_the_end(rendered):
    _run_dir, _timeline, _result, events = rendered("ffmpeg")
    fractions = [e.fraction for e in events if e.kind == "progress" and e.fraction is not None]
    assert len(fractions) >= 3
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(e.kind == "phase" and e.message == "encode" for e in events)


def test_a_timeline_longer_than_the_platform_allows_is_refused(tmp_path, run_stage_inline):
    run_dir = tmp_path / "run"
    timeline = make_inputs(run_dir)
    too_long = msgspec.structs.replace(timeline, duration_s=61.0)
    with pytest.raises(StageError, match="over the 60 s"):
        run_stage_inline(run_dir, "render", RenderParams(), timeline=too_long)
    assert not (run_dir / "render" / "final.mp4").exists()
    (run_dir / "broll" / "still.png").unlink()
    with pytest.raises(StageError, match="still.png is missing"):
        run_stage_inline(run_dir, "render", RenderParams(), timeline=timeline)


def test_an_undecodable_clip_fails_with_the_segment_named_and_no_ffmpeg_left(tmp_path, run_stage_inline):
    import psutil

    run_dir = tmp_path / "run"
    timeline = make_inputs(run_dir)
    (run_dir / "broll" / "land.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(StageError, match="segment 1"):
        run_stage_inline(run_dir, "render", RenderParams(), timeline=timeline)
    assert not [p for p in psutil.Process().children(recursive=True) if "ffmpeg" in p.name()]
    assert not (run_dir / "render" / "final.mp4").exists()


@pytest.mark.slow
def test_moviepy_reference_renders_the_same_layout_and_length(rendered):
    run_dir, timeline, result, _events = rendered("moviepy")
    _ff_dir, _ff_timeline, ff_result, _ff_events = rendered("ffmpeg")
    video = resolve_in_run(run_dir, result.video)
    check_layout(video, timeline)
    assert result.renderer == "moviepy"
    assert result.duration_s == pytest.approx(ff_result.duration_s, abs=0.1)
    assert (result.width, result.height, result.fps) == (ff_result.width, ff_result.height, ff_result.fps)
    assert frame_at(video, 1.0).var() > 100 and frame_at(video, 4.5).var() > 100
    lit = yellow_mask(frame_at(video, 0.5, "rgb24"))
    assert lit[: int(0.8 * H)].sum() > 200 and lit[int(0.8 * H):].sum() == 0
    pause = audio_rms_db(video, GAP[0] + 0.3, GAP[1] - 0.3)
    assert -60 < pause < audio_rms_db(video, 0.5, 1.5) - 10


def test_segments_land_on_their_frames_and_crossfades_blend_with_two_ffmpegs_at_most(tmp_path, run_stage_inline):
    """Red and blue stills alternate: a cut at 1 s, a 0.4 s crossfade from 2 s. Small frame, to stay quick."""
    import threading

    import psutil

    run_dir = tmp_path / "run"
    (run_dir / "tts").mkdir(parents=True)
    (run_dir / "broll").mkdir()
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:sample_rate=24000:duration=3.8", str(run_dir / "tts" / "narration.wav"))
    for colour in ("red", "blue"):
        ffmpeg("-f", "lavfi", "-i", f"color={colour}:s=64x64", "-frames:v", "1", str(run_dir / "broll" / f"{colour}.png"))

    def still(start: float, end: float, colour: str, fade: float = 0.0) -> Segment:
        return Segment(start=start, end=end, candidate_id=colour, path=f"broll/{colour}.png", media="still",
                       motion="none", transition_s=fade)

    small = msgspec.structs.replace(
        make_timeline_stub(), width=216, height=384, duration_s=4.0, narration_duration_s=3.8, music=None,
        captions=[], segments=[still(0, 1, "red"), still(1, 2, "blue"), still(2, 3, "red", 0.4), still(3, 4, "blue")],
    )
    most, done = [0], threading.Event()

    def count_ffmpegs() -> None:
        me = psutil.Process()
        def is_ffmpeg(process: psutil.Process) -> bool:
            try:
                return "ffmpeg" in process.name()
            except psutil.NoSuchProcess:  # ended between listing and naming
                return False

        while not done.is_set():
            alive = [p for p in me.children(recursive=True) if is_ffmpeg(p)]
            most[0] = max(most[0], len(alive))
            done.wait(0.01)

    watcher = threading.Thread(target=count_ffmpegs)
    watcher.start()
    try:
        result, _events = run_stage_inline(run_dir, "render", RenderParams(), timeline=small)
    finally:
        done.set()
        watcher.join()
    assert most[0] == 2, "the encoder and one segment at a time"
    video = resolve_in_run(run_dir, result.video)
    assert result.duration_s == pytest.approx(4.0, abs=0.1)

    def centre(t: float) -> tuple[int, int]:
        raw = ffmpeg("-ss", f"{t}", "-i", str(video), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
        pixel = np.frombuffer(raw, np.uint8).reshape(384, 216, 3)[192, 108].astype(int)
        return int(pixel[0]), int(pixel[2])

    for t, expected in ((0.5, "red"), (0.95, "red"), (1.05, "blue"), (1.9, "blue"), (2.6, "red"), (3.5, "blue")):
        red, blue = centre(t)
        assert (red > 180 and blue < 70) if expected == "red" else (blue > 180 and red < 70), (t, red, blue)
    red, blue = centre(2.2)
    assert 60 < red < 200 and 60 < blue < 200, "half way through the crossfade"


def test_only_the_crossfade_frames_pass_through_xfade(tmp_path):
    """xfade works in 4:4:4; the rest of a segment must not be converted there and back, frame by frame."""
    from aishorts.stages.render.plan import frame_plan
    from aishorts.stages.render.stage import producer_graph

    def still(start: float, end: float, fade: float) -> Segment:
        return Segment(start=start, end=end, candidate_id="s", path="broll/s.png", media="still",
                       motion="pan_left", transition_s=fade)

    timeline = msgspec.structs.replace(make_timeline_stub(), duration_s=4.0,
                                       segments=[still(0, 2, 0.0), still(2, 4, 0.5)])
    cuts = frame_plan(timeline)
    ctx = type("Ctx", (), {"path": lambda self, p: tmp_path / p})()
    _inputs, graph = producer_graph(ctx, timeline, cuts, 1)
    xfade = next(s for s in graph.split(";") if "xfade=" in s)
    incoming = xfade.split("]")[1].lstrip("[")
    head = next(s for s in graph.split(";") if s.endswith(f"[{incoming}]"))
    assert f"trim=end_frame={cuts[1].fade_in}" in head and cuts[1].fade_in == 15
    assert "concat=n=2" in graph


def make_timeline_stub() -> Timeline:
    """A timeline's fixed fields (platform, bitrates, frame rate) for tests that set the rest."""
    preset = PLATFORMS["shorts"]
    return Timeline(
        width=W, height=H, fps=FPS, duration_s=1.0, narration_wav="tts/narration.wav", narration_duration_s=1.0,
        segments=[], captions=[], music=None, platform="shorts", max_duration_s=preset.max_duration_s,
        video_bitrate=preset.video_bitrate, audio_bitrate=preset.audio_bitrate, caption_margin_v=round(0.28 * H),
    )


@pytest.mark.parametrize("renderer", ["ffmpeg", "moviepy"])
def test_music_ducks_under_speech_by_duck_db(tmp_path, run_stage_inline, renderer):
    """A silent narration with captions: what is heard is the music alone, under the ducking envelope.

    Levels are compared with the music file's own at the same moments, so the
    track's loudness changes cancel out.
    """
    run_dir = tmp_path / "run"
    timeline = make_inputs(run_dir)
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=24000:cl=mono", "-t", f"{NARRATION_S}",
           str(run_dir / "tts" / "narration.wav"))
    small = msgspec.structs.replace(timeline, width=216, height=384)
    result, _events = run_stage_inline(run_dir, "render", RenderParams(renderer=renderer), timeline=small)
    video = resolve_in_run(run_dir, result.video)
    music = resolve_in_run(run_dir, timeline.music.path)
    speech, pause = (0.8, 1.8), (GAP[0] + 0.3, GAP[1] - 0.3)
    gain_in_speech = audio_rms_db(video, *speech) - audio_rms_db(music, *speech)
    gain_in_pause = audio_rms_db(video, *pause) - audio_rms_db(music, *pause)
    assert gain_in_pause == pytest.approx(timeline.music.gain_db, abs=2.0)
    assert gain_in_speech - gain_in_pause == pytest.approx(timeline.music.duck_db, abs=2.0)


def test_under_a_small_ceiling_the_encoder_runs_lean_and_the_log_says_so(tmp_path):
    from aishorts.ipc.params import RenderParams
    from aishorts.stages.render import stage as render
    from tests.conftest import stage_context

    small, small_events = stage_context(tmp_path, "render", RenderParams(), 412 * 2**20)
    roomy, roomy_events = stage_context(tmp_path, "render", RenderParams(), 668 * 2**20)
    assert render.lean_encoder(small) and not render.lean_encoder(roomy)
    assert any("slice threads and no B-frames" in e.message for e in small_events) and not roomy_events
    lean_args = render.encoder_args(make_timeline_stub(), RenderParams(preset="superfast"), lean=True)
    assert lean_args[lean_args.index("-x264-params") + 1] == "sliced-threads=1:bframes=0"
    assert "-x264-params" not in render.encoder_args(make_timeline_stub(), RenderParams(preset="superfast"))


def test_the_quick_preset_is_ultrafast_with_cabac_deblocking_and_the_8x8_transform_put_back():
    from aishorts.ipc.params import RenderParams
    from aishorts.stages.render import stage as render

    args = render.encoder_args(make_timeline_stub(), RenderParams())
    assert args[args.index("-preset") + 1] == "ultrafast"
    x264 = args[args.index("-x264-params") + 1].split(":")
    assert {"cabac=1", "deblock=1", "8x8dct=1"} <= set(x264)
    lean = render.encoder_args(make_timeline_stub(), RenderParams(), lean=True)
    assert lean[lean.index("-x264-params") + 1].split(":")[-2:] == ["sliced-threads=1", "bframes=0"]


def test_each_still_is_laid_out_once_and_the_producers_draw_the_same_frames_from_it(tmp_path, run_stage_inline):
    """A picture shown twice, crossfades between: one laid-out frame per picture, the same video frames as
    laying it out in every producer, and nothing of the laid-out frames left after the render."""
    import hashlib

    from aishorts.stages.render.plan import frame_plan
    from aishorts.stages.render.stage import lay_out_stills, producer_command, producer_graph, still_size

    run_dir = tmp_path / "run"
    (run_dir / "tts").mkdir(parents=True)
    (run_dir / "broll").mkdir()
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:sample_rate=24000:duration=2.8", str(run_dir / "tts" / "narration.wav"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90", "-frames:v", "1", str(run_dir / "broll" / "wide.png"))
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=s=90x160", "-frames:v", "1", str(run_dir / "broll" / "tall.png"))

    def still(start: float, end: float, name: str, motion: str) -> Segment:
        return Segment(start=start, end=end, candidate_id=name, path=f"broll/{name}.png", media="still",
                       motion=motion, transition_s=0.2 if start else 0.0)

    timeline = msgspec.structs.replace(
        make_timeline_stub(), width=216, height=384, duration_s=3.0, narration_duration_s=2.8, music=None,
        captions=[], segments=[still(0, 1, "wide", "zoom_in"), still(1, 2, "tall", "pan_left"),
                               still(2, 3, "wide", "pan_right")],
    )
    ctx = type("Ctx", (), {"path": lambda self, p: run_dir / p})()
    folder = tmp_path / "stills"
    folder.mkdir()
    laid_out = lay_out_stills(ctx, timeline, folder, tmp_path / "stills.log")
    assert sorted(laid_out) == ["broll/tall.png", "broll/wide.png"]
    w, h = still_size(timeline)
    assert all(p.stat().st_size == w * h * 3 // 2 for p in laid_out.values())

    def frames(ready: dict | None) -> tuple[str, int]:
        digest, size, cuts = hashlib.sha256(), 0, frame_plan(timeline)
        for i in range(len(cuts)):
            inputs, graph = producer_graph(ctx, timeline, cuts, i, ready)
            if ready:
                assert "boxblur" not in graph and "png" not in " ".join(inputs)
            raw = subprocess.run(producer_command(inputs, graph), capture_output=True, check=True).stdout
            digest.update(raw)
            size += len(raw)
        return digest.hexdigest(), size

    once, each = frames(laid_out), frames(None)
    assert once == each and once[1] == 90 * 216 * 384 * 3 // 2

    result, _ = run_stage_inline(run_dir, "render", RenderParams(), timeline=timeline)
    assert result.duration_s == pytest.approx(3.0, abs=0.1)
    assert not (run_dir / "render" / "stills").exists()

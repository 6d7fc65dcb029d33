"""The look and sound a user asks for: caption position, size, colours and outline, captions off, the music's level,
the user's own track, the narration's level (`ShortRequest`'s caption_*, captions, music_volume, music_file,
voice_volume, and MoneyPrinterTurbo's subtitle_position, font_size, text_fore_color, stroke_color, stroke_width,
subtitle_enabled, bgm_volume, bgm_file, voice_volume).

Each short here goes through the real timeline and render stages (ffmpeg, libass) from a narration made with
ffmpeg: a 300 Hz tone while the words are spoken and silence in a pause between the two sentences, over a flat grey
still. The checks read the rendered video: where the caption's colours land in a decoded frame, and how loud the
300 Hz voice and the user's 1 kHz track are in the decoded audio.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from aishorts.ipc.artifacts import (
    Candidate, Candidates, Matches, Narration, RankedCandidate, SentenceMatch, SentenceSpan, WordSpan,
)
from aishorts.ipc.params import FRAME_SIZES, RenderParams, TimelineParams
from aishorts.ipc.request import RequestError, request_from
from aishorts.runner.options import build_params
from aishorts.serve.requests import FieldError, VideoRequest, _merge_mpt
from aishorts.stages.common.context import StageError
from aishorts.stages.common.media import ffmpeg_exe

pytestmark = pytest.mark.slow

SENTENCES = [(0.2, "Tides rise twice a day."), (3.5, "The moon pulls the sea.")]
WORD_S = 0.26
DURATION_S = 5.3
VOICE_HZ, MUSIC_HZ = 300, 1000
PAUSE = (2.0, 3.0)
"""Between the sentences: no voice, the music at its own level (not ducked, past its fade-in)."""
SPEECH = (0.45, 1.25)
TEXT_RED, STROKE_GREEN = "#FF0000", "#00FF00"


def ffmpeg(*args: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=120,
                          capture_output=True).stdout


def narration(run_dir: Path) -> Narration:
    spans, gates = [], []
    for index, (start, text) in enumerate(SENTENCES):
        words = [WordSpan(w, round(start + k * WORD_S, 3), round(start + (k + 0.9) * WORD_S, 3))
                 for k, w in enumerate(text.split())]
        spans.append(SentenceSpan(index, text, words[0].start, words[-1].end, words))
        gates.append(f"between(t,{words[0].start},{words[-1].end})")
    wav = run_dir / "tts" / "narration.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    # sine is 1/8 of full scale: x4 makes a voice at half of it, silent between the sentences
    ffmpeg("-f", "lavfi", "-i", f"sine=f={VOICE_HZ}:sample_rate=24000:duration={DURATION_S - 0.5}",
           "-af", f"volume='4*({'+'.join(gates)})':eval=frame", "-ac", "1", str(wav))
    return Narration(wav="tts/narration.wav", sample_rate=24000, duration_s=DURATION_S - 0.5, sentences=spans,
                     voice="test", language="en-us", speed=1.0, backend="synthetic")


def grey_still(run_dir: Path) -> Candidates:
    (run_dir / "broll").mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", "color=c=0x808080:s=1200x1200", "-frames:v", "1", str(run_dir / "broll" / "grey.png"))
    return Candidates(source="local", source_reason="test", items=[
        Candidate(id="grey", media="still", path="broll/grey.png", title="grey")])


def matches(narr: Narration) -> Matches:
    return Matches(scorer="text", scorer_reason="test", model="none", device="cpu", sentences=[
        SentenceMatch(s.index, s.text, [RankedCandidate("grey", 1.0)], "grey") for s in narr.sentences])


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> Path:
    """The user's own music: a steady 1 kHz tone at half of full scale, as an MP3 in the user's folder."""
    path = tmp_path_factory.mktemp("music") / "my song.mp3"
    ffmpeg("-f", "lavfi", "-i", f"sine=f={MUSIC_HZ}:sample_rate=44100:duration=8", "-af", "volume=4",
           "-c:a", "libmp3lame", "-b:a", "192k", str(path))
    return path


@pytest.fixture
def make_short(tmp_path_factory, run_stage_inline):
    """make_short(**timeline params) -> (run_dir, timeline): the timeline and render stages run for real."""
    run_stage = run_stage_inline

    def make(renderer: str = "ffmpeg", **params):
        run_dir = tmp_path_factory.mktemp("short")
        narr = narration(run_dir)
        timeline, _ = run_stage(run_dir, "timeline", TimelineParams(**params), tts=narr, match=matches(narr),
                                broll=grey_still(run_dir))
        run_stage(run_dir, "render", RenderParams(renderer=renderer, preset="ultrafast"), timeline=timeline)
        return run_dir, timeline

    return make


def frame(run_dir: Path, aspect: str, at: float) -> np.ndarray:
    width, height = FRAME_SIZES[aspect]
    raw = ffmpeg("-ss", f"{at}", "-i", str(run_dir / "final.mp4"), "-frames:v", "1", "-f", "rawvideo",
                 "-pix_fmt", "rgb24", "-")
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3).astype(np.int32)


def coloured(rgb: np.ndarray, colour: str) -> np.ndarray:
    """Pixels near pure red or pure green (the grey still and the gold lit word are neither)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if colour == TEXT_RED:
        return (r > 170) & (g < 90) & (b < 90)
    return (g > 170) & (r < 90) & (b < 90)


def tone_level(run_dir: Path, hz: int, span: tuple[float, float]) -> float:
    """The amplitude of the `hz` tone in the video's sound over `span` (from its spectrum), in dB of full scale."""
    raw = ffmpeg("-i", str(run_dir / "final.mp4"), "-vn", "-ac", "1", "-ar", "48000", "-f", "f32le", "-")
    audio = np.frombuffer(raw, np.float32)[int(span[0] * 48000):int(span[1] * 48000)]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) / (np.hanning(audio.size).sum() / 2)
    freqs = np.fft.rfftfreq(audio.size, 1 / 48000)
    band = spectrum[(freqs > hz - 15) & (freqs < hz + 15)]
    return 20 * np.log10(max(band.max(), 1e-9))


@pytest.mark.parametrize(("renderer", "position"), [("ffmpeg", "top"), ("ffmpeg", "center"), ("ffmpeg", "bottom"),
                                                  ("moviepy", "top")])
def test_captions_sit_where_asked_in_the_colours_and_size_asked(make_short, renderer, position):
    run_dir, timeline = make_short(renderer, aspect="9:16", music=False, caption_position=position, caption_size=90,
                                   caption_color=TEXT_RED, caption_stroke_color=STROKE_GREEN, caption_stroke_width=6)
    height = FRAME_SIZES["9:16"][1]
    picture = frame(run_dir, "9:16", SPEECH[0] + 0.3)  # the first caption: its first word lit, the rest red
    rows = np.nonzero(coloured(picture, TEXT_RED))[0]
    outline = np.nonzero(coloured(picture, STROKE_GREEN))[0]
    assert rows.size > 800, "no red caption text in the frame"
    assert outline.size > 800, "no green outline around the caption"
    assert 45 < rows.max() - rows.min() < 130  # one line of 90-pixel text (its letters, without the line gap)
    assert outline.min() < rows.min() and outline.max() > rows.max()  # the outline wraps the letters
    middle = (rows.min() + rows.max()) / 2 / height
    expected = {"top": (0.08, 0.22), "center": (0.45, 0.55), "bottom": (0.62, 0.74)}[position]
    assert expected[0] < middle < expected[1], f"caption centred at {middle:.2f} of the height"
    # and the frame outside the caption block is the still's grey
    assert not coloured(picture, TEXT_RED)[: int(height * 0.05)].any()


@pytest.mark.parametrize(("renderer", "percent"), [("ffmpeg", 30.0), ("ffmpeg", 85.0), ("moviepy", 85.0)])
def test_captions_sit_at_the_height_asked_in_percent_of_the_frame(make_short, renderer, percent):
    """MoneyPrinterTurbo's custom position: a one-line caption's top at `percent` of the height the line leaves."""
    size = 90
    run_dir, timeline = make_short(renderer, aspect="9:16", music=False, caption_y=percent, caption_size=size,
                                   caption_color=TEXT_RED, caption_stroke_color=STROKE_GREEN, caption_stroke_width=6)
    height = FRAME_SIZES["9:16"][1]
    rows = np.nonzero(coloured(frame(run_dir, "9:16", SPEECH[0] + 0.3), TEXT_RED))[0]
    assert rows.size > 800, "no red caption text in the frame"
    assert 45 < rows.max() - rows.min() < 130  # one line
    middle = (rows.min() + rows.max()) / 2
    expected = (height - size) * percent / 100 + size / 2
    assert abs(middle - expected) < 0.01 * height, f"caption centred at row {middle:.0f}, asked {expected:.0f}"


def test_the_moviepy_renderer_plays_the_voice_at_the_level_asked_and_burns_no_captions_when_off(make_short):
    run_dir, _ = make_short("moviepy", aspect="1:1", music=False, voice_volume=0.5, captions=False,
                            caption_color=TEXT_RED)
    assert tone_level(run_dir, VOICE_HZ, SPEECH) == pytest.approx(-12.0, abs=1.0)  # half of -6 dB
    assert not coloured(frame(run_dir, "1:1", SPEECH[0] + 0.3), TEXT_RED).any()


def test_the_users_own_track_plays_at_the_level_asked_and_the_voice_at_its_own(make_short, track):
    loud_dir, loud = make_short(aspect="1:1", music_file=str(track), music_volume=1.0)
    quiet_dir, quiet = make_short(aspect="1:1", music_file=str(track), music_volume=0.1, voice_volume=0.5,
                                  captions=False, caption_color=TEXT_RED)
    assert loud.music is not None and loud.music.title == "my song.mp3 (your file)"
    assert (loud_dir / loud.music.path).read_bytes() == track.read_bytes()  # the run keeps the track it used
    # in the pause the user's 1 kHz track plays at its own level at volume 1.0 (half of full scale: -6 dB)...
    music_loud = tone_level(loud_dir, MUSIC_HZ, PAUSE)
    assert -8.0 < music_loud < -4.5
    # ...and 20 dB lower at 0.1
    assert tone_level(quiet_dir, MUSIC_HZ, PAUSE) == pytest.approx(music_loud - 20.0, abs=1.5)
    # the voice (300 Hz) at half its level: 6 dB lower
    voice_loud = tone_level(loud_dir, VOICE_HZ, SPEECH)
    assert tone_level(quiet_dir, VOICE_HZ, SPEECH) == pytest.approx(voice_loud - 6.0, abs=1.0)
    # no captions burnt in when they are off (the red asked for appears nowhere), though the files are written
    assert not coloured(frame(quiet_dir, "1:1", SPEECH[0] + 0.3), TEXT_RED).any()
    assert coloured(frame(loud_dir, "1:1", SPEECH[0] + 0.3), TEXT_RED).sum() == 0  # white captions there
    assert "Tides" in (quiet_dir / "captions.srt").read_text()


def test_music_at_level_0_is_no_music(make_short, track):
    _run_dir, timeline = make_short(aspect="1:1", music_file=str(track), music_volume=0.0, captions=False)
    assert timeline.music is None


def test_a_file_without_audio_is_refused_by_the_timeline(tmp_path, make_short):
    fake = tmp_path / "not music.mp3"
    fake.write_text("these are words, not sound")
    with pytest.raises(StageError, match="not readable audio|holds no audio"):
        make_short(aspect="1:1", music_file=str(fake))


def test_the_music_file_must_exist_when_the_short_is_asked_for(tmp_path):
    with pytest.raises(RequestError, match="music_file: no such file"):
        build_params(request_from({"topic": "Tides", "music_file": str(tmp_path / "missing.mp3")}), None)
    (tmp_path / "song.mp3").write_bytes(b"\xff\xfb" * 100)
    params = build_params(request_from({"topic": "Tides", "music_file": str(tmp_path / "song.mp3")}), None)
    assert params.timeline.music_file == str((tmp_path / "song.mp3").resolve())


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("caption_color", "red", "#RRGGBB"), ("caption_size", 5, "between 20 and 200"),
    ("music_volume", 1.5, "between 0.0 and 1.0"), ("caption_position", "left", "bottom, center, top"),
])
def test_bad_style_values_are_refused_naming_the_field(field, value, reason):
    with pytest.raises(RequestError, match=reason) as refused:
        request_from({field: value})
    assert refused.value.field == field


def test_moneyprinterturbos_subtitle_and_music_fields_set_ours():
    short, ignored, _ = _merge_mpt(VideoRequest(
        video_subject="Tides", subtitle_position="top", font_size=60, text_fore_color="#ffff00",
        stroke_color="#000000", stroke_width=1.5, subtitle_enabled=True, bgm_volume=0.2, bgm_type="custom",
        bgm_file="/music/song.mp3", voice_volume=1.8))
    assert (short.caption_position, short.caption_size, short.caption_color, short.caption_stroke_color,
            short.caption_stroke_width, short.captions) == ("top", 60, "#FFFF00", "#000000", 1.5, True)
    assert (short.music, short.music_volume, short.music_file, short.voice_volume) == (
        True, 0.2, "/music/song.mp3", 1.8)
    assert not {"subtitle_position", "font_size", "bgm_volume", "bgm_file", "voice_volume"} & set(ignored)


def test_its_custom_subtitle_position_sets_the_caption_height_and_a_custom_bgm_needs_its_file():
    short, ignored, _ = _merge_mpt(VideoRequest(video_subject="Tides", subtitle_position="custom",
                                                custom_position=30))
    assert (short.caption_position, short.caption_y) == (None, 30.0)
    assert not {"subtitle_position", "custom_position"} & set(ignored)
    short, ignored, _ = _merge_mpt(VideoRequest(video_subject="Tides", subtitle_position="custom"))
    assert short.caption_y == 70.0  # its default custom_position
    short, ignored, _ = _merge_mpt(VideoRequest(video_subject="Tides", subtitle_position="top", custom_position=70.0))
    assert (short.caption_position, short.caption_y) == ("top", None) and "custom_position" in ignored
    with pytest.raises(FieldError) as refused:
        _merge_mpt(VideoRequest(video_subject="Tides", subtitle_position="custom", custom_position=120.0))
    assert refused.value.field == "custom_position" and "100" in refused.value.reason
    with pytest.raises(FieldError) as refused:
        _merge_mpt(VideoRequest(video_subject="Tides", bgm_type="custom"))
    assert refused.value.field == "bgm_type" and "bgm_file" in refused.value.reason
    with pytest.raises(FieldError) as refused:
        _merge_mpt(VideoRequest(video_subject="Tides", font_size=500))
    assert refused.value.field == "font_size"


def test_a_batch_rows_music_file_is_read_from_the_batch_files_folder(tmp_path):
    from aishorts.runner.batchfile import read_batch_file

    (tmp_path / "songs").mkdir()
    (tmp_path / "songs" / "calm.mp3").write_bytes(b"\xff\xfb" * 100)
    batch = tmp_path / "shorts.csv"
    batch.write_text("topic,music_file,caption_position,caption_color\nTides,songs/calm.mp3,top,#00ff00\n")
    (line,) = read_batch_file(batch)
    request = line.row.request
    assert (request.music_file, request.caption_position, request.caption_color) == (
        str(tmp_path / "songs" / "calm.mp3"), "top", "#00FF00")


def test_short_video_makers_orientation_music_level_and_caption_position_set_ours():
    from aishorts.serve.requests import ShortVideoRequest, SvmConfig, SvmScene, video_from_short_video_maker

    def made(**config):
        return video_from_short_video_maker(ShortVideoRequest(scenes=[SvmScene(text="Tides turn.")],
                                                              config=SvmConfig(**config)))

    video = made(orientation="landscape", musicVolume="high", captionPosition="top")
    assert (video.aspect, video.music, video.music_volume, video.caption_position) == ("16:9", True, 0.32, "top")
    assert (made(musicVolume="muted").music, made(orientation="portrait").aspect) == (False, "9:16")
    with pytest.raises(FieldError) as refused:
        made(captionPosition="left")
    assert refused.value.field == "config" and "top, center, bottom" in refused.value.reason

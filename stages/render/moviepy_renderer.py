"""The MoviePy renderer: the same timeline as stages/render/stage.py's ffmpeg graph, drawn frame by frame in Python.

Kept as the reference the fast path is measured against: the same plan
(stages/render/plan.py: frames, still margin, music envelope), size, rate,
codecs and caption events. It never imports stages/render/stage.py, whose backend it
is. Pictures are fitted over a blurred fill with Pillow, stills pan or zoom on
a sub-pixel crop box, crossfades are MoviePy's CrossFadeIn, and the captions
are drawn with Pillow from the same per-word events and font file as
captions.ass (not by libass, so glyph placement differs by a few pixels).
Frames are produced on demand and audio is written in chunks: nothing holds
the whole video in memory.

MoviePy, NumPy and Pillow are imported inside functions: importing this module
stays cheap.
"""

from __future__ import annotations

import bisect
from functools import lru_cache
from pathlib import Path
from typing import Any

from aishorts.ipc.artifacts import Timeline
from aishorts.ipc.languages import join_words
from aishorts.ipc.params import RenderParams
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.outputs import fresh, raise_if_out_of_space, removed_on_failure
from aishorts.stages.render.captions import HIGHLIGHT_RGB, CaptionStyle, Font, WordEvent, caption_style, word_events
from aishorts.stages.render.plan import (
    DUCK_RAMP_S, MUSIC_FADE_IN_S, MUSIC_FADE_OUT_S, STILL_MARGIN, Cut, double_rate, even, frame_plan, speech_spans,
    x264_settings,
)


def render_moviepy(ctx: StageContext, timeline: Timeline, params: RenderParams, font: Font, output: Path) -> None:
    from moviepy import CompositeVideoClip, vfx

    fps = timeline.fps
    sources: list[Any] = []
    readers = _Readers()
    try:
        layers = []
        for index, cut in enumerate(frame_plan(timeline)):
            clip = _segment_clip(ctx, index, cut, timeline, readers).with_start(cut.first / fps)
            if cut.fade_in > 0:
                clip = clip.with_effects([vfx.CrossFadeIn(cut.fade_in / fps)])
            layers.append(clip)
        total_frames = round(timeline.duration_s * fps)
        # A quarter frame more, so MoviePy's int(duration * fps) cannot round the last frame away.
        duration = (total_frames + 0.25) / fps
        video = CompositeVideoClip(layers, size=(timeline.width, timeline.height), bg_color=(0, 0, 0))
        video = video.with_duration(duration).without_mask()
        if timeline.caption_look.show:
            video = video.transform(CaptionPainter(word_events(timeline.captions), font, caption_style(timeline)).paint)
        video = video.with_audio(_audio(ctx, timeline, duration, sources))
        audio_temp = fresh(ctx.out_dir / "moviepy-audio.m4a")
        preset, x264 = x264_settings(params.preset)
        with removed_on_failure(audio_temp):
            video.write_videofile(
                str(output), fps=fps, codec="libx264", bitrate=timeline.video_bitrate, audio_codec="aac",
                audio_bitrate=timeline.audio_bitrate, audio_fps=48000, preset=preset,
                threads=params.threads or None, pixel_format="yuv420p", temp_audiofile=str(audio_temp),
                ffmpeg_params=["-profile:v", "high", "-maxrate", timeline.video_bitrate,
                               "-bufsize", double_rate(timeline.video_bitrate), "-g", str(2 * fps),
                               "-ac", "2", "-movflags", "+faststart",
                               *(["-x264-params", ":".join(x264)] if x264 else [])],
                logger=_progress_logger(ctx),
            )
    except OSError as exc:
        raise_if_out_of_space(str(exc), output.parent)
        raise StageError(f"MoviePy could not render the timeline: {exc}") from None
    finally:
        for source in sources:
            source.close()
        readers.close()


class _Readers:
    """Source clips opened on first use, at most two at a time (one crossfade), like the ffmpeg renderer.

    MoviePy keeps an ffmpeg reader process per open VideoFileClip; opening every
    segment's source up front would hold all of them for the whole render.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.open: dict[int, Any] = {}

    def get(self, segment: int, path: Path) -> Any:
        """The reader of segment `segment` (one per segment: two segments of one file read different times)."""
        from moviepy import VideoFileClip

        if segment in self.open:
            self.open[segment] = self.open.pop(segment)
        else:
            while len(self.open) >= self.keep:
                self.open.pop(next(iter(self.open))).close()
            self.open[segment] = VideoFileClip(str(path), audio=False)
        return self.open[segment]

    def close(self) -> None:
        for clip in self.open.values():
            clip.close()
        self.open.clear()


def _segment_clip(ctx: StageContext, index: int, cut: Cut, timeline: Timeline, readers: _Readers) -> Any:
    from moviepy import VideoClip

    segment = timeline.segments[index]
    w, h, fps = timeline.width, timeline.height, timeline.fps
    length = cut.frames / fps
    path = ctx.path(segment.path)
    if segment.media == "still":
        canvas = _filled(_open_still(path), even(w * (1 + STILL_MARGIN)), even(h * (1 + STILL_MARGIN)))
        return VideoClip(frame_function=_still_motion(canvas, segment.motion, cut.frames, w, h, fps), duration=length)
    offset = segment.source_offset_s

    def frame(t: float) -> Any:
        source = readers.get(index, path)
        # The last frame that surely decodes; a source shorter than the segment holds it (no loops).
        last = max(source.duration - 1.0 / max(source.fps or fps, 1), 0.0)
        return _array(_filled(_image(source.get_frame(min(offset + t, last))), w, h))

    return VideoClip(frame_function=frame, duration=length)


def _open_still(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def _image(array: Any) -> Any:
    from PIL import Image

    return Image.fromarray(array).convert("RGB")


def _array(image: Any) -> Any:
    import numpy as np

    return np.asarray(image, dtype=np.uint8)


def _filled(image: Any, width: int, height: int) -> Any:
    """The picture fitted inside width x height over a blurred, cropped copy of itself (like render._fill_chain)."""
    from PIL import Image, ImageFilter, ImageOps

    small = ImageOps.fit(image, (even(width / 4), even(height / 4)), Image.Resampling.BILINEAR)
    background = small.filter(ImageFilter.GaussianBlur(6)).resize((width, height), Image.Resampling.BILINEAR)
    foreground = ImageOps.contain(image, (width, height), Image.Resampling.BICUBIC)
    background.paste(foreground, ((width - foreground.width) // 2, (height - foreground.height) // 2))
    return background


def _still_motion(canvas: Any, motion: str, frames: int, width: int, height: int, fps: int) -> Any:
    """frame(t) for a still: zoom on a centred, sub-pixel box, or pan a frame-sized window across (like ffmpeg's crop)."""
    from PIL import Image

    cw, ch = canvas.size
    last = max(frames - 1, 1)
    pixels = _array(canvas)
    top = (ch - height) // 2

    @lru_cache(maxsize=2)
    def at_frame(n: int) -> Any:
        p = min(max(n / last, 0.0), 1.0)
        if motion in ("pan_left", "pan_right"):
            x = int((cw - width) * (p if motion == "pan_right" else 1 - p))
            return pixels[top:top + height, x:x + width]
        box: tuple[float, float, float, float] = (0, 0, cw, ch)
        if motion in ("zoom_in", "zoom_out"):
            zoom = 1 + STILL_MARGIN * (p if motion == "zoom_in" else 1 - p)
            bw, bh = cw / zoom, ch / zoom
            box = ((cw - bw) / 2, (ch - bh) / 2, (cw + bw) / 2, (ch + bh) / 2)
        return _array(canvas.resize((width, height), Image.Resampling.BILINEAR, box=box))

    return lambda t: at_frame(round(t * fps))


class CaptionPainter:
    """Draws the word event playing at t over a frame: white bold words, the spoken one lit, black outline."""

    def __init__(self, events: list[WordEvent], font: Font, style: CaptionStyle) -> None:
        from PIL import ImageFont

        self.events = events
        self.starts = [e.start for e in events]
        self.style = style
        # An ASS font size is the line height (ascent + descent), not the em size Pillow takes.
        probe = ImageFont.truetype(str(font.path), style.font_size)
        scale = style.font_size / max(sum(probe.getmetrics()), 1)
        self.font = ImageFont.truetype(str(font.path), max(round(style.font_size * scale), 1))
        self._patch = lru_cache(maxsize=2)(self._render)

    def paint(self, get_frame: Any, t: float) -> Any:
        frame = get_frame(t)
        k = bisect.bisect_right(self.starts, t) - 1
        if k < 0 or t >= self.events[k].end:
            return frame
        rgb, alpha, x, y = self._patch(k)
        out = frame.copy()
        rows, cols = min(rgb.shape[0], out.shape[0] - y), min(rgb.shape[1], out.shape[1] - x)
        region = out[y:y + rows, x:x + cols]
        a = alpha[:rows, :cols]
        region[:] = (rgb[:rows, :cols] * a + region * (1.0 - a)).astype(out.dtype)
        return out

    def _render(self, k: int) -> tuple[Any, Any, int, int]:
        import numpy as np
        from PIL import Image, ImageDraw

        event, style = self.events[k], self.style
        lines = self._wrap(event.words, style.width - 2 * style.margin_h)
        ascent, descent = self.font.getmetrics()
        line_h, pad = ascent + descent, round(style.outline) + 2
        space = self._space(event.words)
        width = int(max(self._line_width(line, space) for line in lines)) + 2 * pad
        height = line_h * len(lines) + 2 * pad
        image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(lines):
            x = pad + (width - 2 * pad - self._line_width(line, space)) / 2
            for index, word in line:
                fill = HIGHLIGHT_RGB if index == event.highlight else style.text_rgb
                draw.text((x, pad + row * line_h), word, font=self.font, fill=fill,
                          stroke_width=round(style.outline), stroke_fill=style.stroke_rgb)
                x += self.font.getlength(word) + space
        pixels = np.asarray(image, dtype=np.float32)
        left = max((style.width - width) // 2, 0)
        top = min(max(style.top(height - 2 * pad) - pad, 0), max(style.height - height, 0))
        return pixels[:, :, :3], pixels[:, :, 3:] / 255.0, left, top

    def _wrap(self, words: tuple[str, ...], max_width: float) -> list[list[tuple[int, str]]]:
        lines: list[list[tuple[int, str]]] = [[]]
        space = self._space(words)
        for index, word in enumerate(words):
            if lines[-1] and self._line_width(lines[-1] + [(index, word)], space) > max_width:
                lines.append([])
            lines[-1].append((index, word))
        return lines

    def _space(self, words: tuple[str, ...]) -> float:
        """The gap between words: none where their script is written without spaces (Chinese, Japanese)."""
        return 0.0 if join_words(list(words)) == "".join(words) else self.font.getlength(" ")

    def _line_width(self, line: list[tuple[int, str]], space: float) -> float:
        return sum(self.font.getlength(word) for _, word in line) + space * max(len(line) - 1, 0)


def _audio(ctx: StageContext, timeline: Timeline, duration: float, sources: list[Any]) -> Any:
    """Narration (as is, silence after it) plus the looped music bed under the same envelope as the ffmpeg graph."""
    from moviepy import AudioFileClip, CompositeAudioClip, afx

    voice = AudioFileClip(str(ctx.path(timeline.narration_wav)), fps=48000)
    sources.append(voice)
    if timeline.narration_gain_db:
        voice = voice.with_effects([afx.MultiplyVolume(10 ** (timeline.narration_gain_db / 20))])
    if timeline.music is None:
        return CompositeAudioClip([voice]).with_duration(duration)
    music_file = AudioFileClip(str(ctx.path(timeline.music.path)), fps=48000)
    sources.append(music_file)
    music = music_file.with_effects([afx.AudioLoop(duration=duration)])
    envelope = _music_envelope(timeline, duration)
    music = music.transform(lambda get_frame, t: get_frame(t) * envelope(t))
    return CompositeAudioClip([voice, music]).with_duration(duration)


def _music_envelope(timeline: Timeline, duration: float) -> Any:
    """Gain per sample: base level, ducked under speech (render._duck_expr, vectorised), faded in and out."""
    import numpy as np

    assert timeline.music is not None
    spans = speech_spans(timeline.captions)
    gain_db, duck_db, ramp = timeline.music.gain_db, timeline.music.duck_db, DUCK_RAMP_S

    def envelope(t: Any) -> Any:
        t = np.asarray(t, dtype=np.float64)
        amount = np.zeros_like(t)
        for start, end in spans:
            amount = np.maximum(amount, np.clip(np.minimum((t - start + ramp) / ramp, (end + ramp - t) / ramp), 0, 1))
        gain = 10 ** ((gain_db + duck_db * amount) / 20)
        fades = np.clip(t / MUSIC_FADE_IN_S, 0, 1) * np.clip((duration - t) / MUSIC_FADE_OUT_S, 0, 1)
        result = gain * fades
        return result[:, None] if result.ndim else result

    return envelope


def _progress_logger(ctx: StageContext) -> Any:
    import proglog

    class Progress(proglog.ProgressBarLogger):
        """Audio chunks count for the first 10%, video frames for the rest (up to 95%)."""

        def __init__(self) -> None:
            super().__init__()
            self.reported = -1.0

        def bars_callback(self, bar: str, attr: str, value: Any, old_value: Any = None) -> None:
            total = self.bars.get(bar, {}).get("total") or 0
            if attr != "index" or not total:
                return
            done = (value + 1) / total
            fraction = 0.1 * done if bar == "chunk" else 0.1 + 0.85 * done
            if fraction - self.reported >= 0.02:
                self.reported = fraction
                ctx.progress(f"moviepy {'audio' if bar == 'chunk' else 'frames'} {done:.0%}", round(fraction, 4))

    return Progress()

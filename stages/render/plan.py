"""The render plan both renderers follow, so that ffmpeg and MoviePy draw and mix the same short.

Responsible for: the timeline in whole frames (`Cut`, `frame_plan`: each
segment's own frames, its run-on under the next crossfade and its fade in),
how much larger stills are laid out so they can pan or zoom, when the music
ducks under the voice and how it ramps and fades, and the small size and
bitrate arithmetic both encoders share. Not responsible for drawing, mixing or
encoding anything (stages/render/stage.py with ffmpeg, stages/render/moviepy_renderer.py with
MoviePy), nor for deciding the edit (the timeline stage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aishorts.ipc.artifacts import Caption, Timeline
from aishorts.stages.common.context import StageError

STILL_MARGIN = 0.12
"""Stills are laid out this much larger than the frame, so they can pan or zoom without showing an edge."""
DUCK_RAMP_S = 0.15
DUCK_MERGE_GAP_S = 0.6
MUSIC_FADE_IN_S = 0.5
MUSIC_FADE_OUT_S = 1.5


@dataclass(frozen=True)
class Cut:
    """A segment in whole frames: where it starts, its own slot, the run-on under the next crossfade, the fade in."""

    first: int
    own: int
    extend: int
    fade_in: int

    @property
    def frames(self) -> int:
        """All frames the segment's picture lasts (its motion spans these)."""
        return self.own + self.extend


def frame_plan(timeline: Timeline) -> list[Cut]:
    """Segments rounded to frames; each runs on under the crossfade into the next one."""
    fps, segments = timeline.fps, timeline.segments
    total = round(timeline.duration_s * fps)
    starts = [min(round(s.start * fps), total) for s in segments] + [total]
    own = [max(b - a, 1) for a, b in zip(starts, starts[1:])]
    fades = [0] + [max(0, min(round(segments[i].transition_s * fps), own[i - 1] - 1, own[i] - 1))
                   for i in range(1, len(segments))] + [0]
    return [Cut(starts[i], own[i], fades[i + 1], fades[i]) for i in range(len(segments))]


def speech_spans(captions: list[Caption], merge_gap_s: float = DUCK_MERGE_GAP_S) -> list[tuple[float, float]]:
    """When the voice speaks (from the caption times), short pauses bridged: where the music ducks."""
    spans: list[tuple[float, float]] = []
    for caption in sorted(captions, key=lambda c: c.start):
        if spans and caption.start - spans[-1][1] <= merge_gap_s:
            spans[-1] = (spans[-1][0], max(spans[-1][1], caption.end))
        else:
            spans.append((caption.start, caption.end))
    return spans


X264_QUICK = ("ultrafast", "cabac=1:deblock=1:8x8dct=1:partitions=i8x8,i4x4:aq-mode=1:aq-strength=0.5")
"""The `quick` preset: x264's ultrafast (no B-frames, the cheapest motion search) with what costs little and
keeps quality: CABAC, the deblocking filter, the 8x8 transform and its intra partitions, AQ at half strength.
On the main command's frames it encodes with about 35% less CPU than superfast at +0.4 dB PSNR, -0.0002 SSIM."""


def x264_settings(preset: str) -> tuple[str, list[str]]:
    """x264's own preset for a RenderParams preset, and the x264 options it adds (`key=value` strings)."""
    if preset == "quick":
        base, extra = X264_QUICK
        return base, extra.split(":")
    return preset, []


def even(value: float) -> int:
    """The nearest even number of pixels, at least 2: what yuv420p frames need."""
    return max(2, int(round(value / 2)) * 2)


def double_rate(rate: str) -> str:
    """Twice a bitrate written like "8M" or "6000k": the encoder's rate-control buffer."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", rate.strip())
    if not match:
        raise StageError(f"video bitrate {rate!r} is not like '8M' or '6000k'; fix the platform preset")
    return f"{float(match.group(1)) * 2:g}{match.group(2)}"

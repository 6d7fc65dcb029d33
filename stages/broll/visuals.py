"""What a b-roll file is: its visual facts read with ffmpeg, and whether it fits the caps.

Responsible for: probing a clip or still (`ffmpeg -i` plus one decoded frame,
its stream summary read by stages/common/media.py) into `VisualFacts`, or the reason
it is unusable (`UnusableMedia`), among them a picture too large to decode
safely, which ffmpeg refuses before allocating its frame; the `Fetched` record
a source makes of a file before it becomes a Candidate; and the configured caps
a download must fit. Not responsible for finding or fetching files (the broll
stage and stages/broll/ytdlp.py).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from aishorts.ipc.params import BrollParams
from aishorts.stages.common import media

PROBE_TIMEOUT_S = 60.0
IMAGE_DEMUXERS = ("image2",)
MAX_PIXELS = 40_000_000
"""Pictures larger than this are refused undecoded: one 16000x16000 PNG took 780 MB to decode, past the stage's
ceiling; 40 megapixels is 120 MB of RGB, and more than any vertical video needs."""
MAX_SIDE_PX = 8192
_REFUSED_SIZE = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")


class UnusableMedia(Exception):
    """A file or URL that cannot become a candidate; the message is the recorded reason, `where` what it was."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


@dataclass(frozen=True)
class VisualFacts:
    media: str  # "video" or "still"
    width: int
    height: int
    duration_s: float | None


@dataclass
class Fetched:
    """A payload on disk with what is known about it, before it becomes a `Candidate`."""

    path: Path
    info: VisualFacts
    title: str
    origin: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    thumbnail: Path | None = None


def probe_media(path: Path) -> VisualFacts:
    """Read a file's stream facts with `ffmpeg -i` and decode one frame; raise UnusableMedia if unusable."""
    cmd = [
        # -max_pixels makes ffmpeg's decoders refuse a larger picture before allocating it, even while probing
        media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-max_pixels", str(MAX_PIXELS), "-i", str(path),
        "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UnusableMedia(f"ffmpeg could not read it within {PROBE_TIMEOUT_S:g} s") from None
    return parse_probe(done.stderr, done.returncode)


def parse_probe(stderr: str, returncode: int) -> VisualFacts:
    """Turn `ffmpeg -i ... -frames:v 1 -f null -` stderr into VisualFacts, or the reason it is unusable."""
    demuxer = re.search(r"^Input #0, (.+?), from ", stderr, re.MULTILINE)
    if demuxer is None:
        raise UnusableMedia(f"not a media file ffmpeg can read ({last_line(stderr)})")
    facts = media.parse_probe(stderr)
    picture = facts.picture
    if picture is None:
        raise UnusableMedia("has no video or image stream")
    if refused := _REFUSED_SIZE.search(stderr):
        raise UnusableMedia(_too_large(int(refused.group(1)), int(refused.group(2))))
    if returncode != 0:
        raise UnusableMedia(f"ffmpeg could not decode a frame ({last_line(stderr)})")
    if not picture.width:
        raise UnusableMedia("ffmpeg reported no frame size")
    width, height = picture.width, picture.height
    if max(width, height) > MAX_SIDE_PX:
        raise UnusableMedia(_too_large(width, height))
    if re.search(r"rotation of -?(90|270)\.", stderr):
        width, height = height, width
    duration = facts.duration_s
    kind = demuxer.group(1)
    still = kind in IMAGE_DEMUXERS or kind.endswith("_pipe") or duration is None or duration <= 0.05
    return VisualFacts("still" if still else "video", width, height, None if still else duration)


def _too_large(width: int, height: int) -> str:
    return (f"{width}x{height} px is too large to decode safely (at most {MAX_SIDE_PX} px a side and"
            f" {MAX_PIXELS / 1e6:g} megapixels); scale it down to use it")


def last_line(text: str) -> str:
    """The last non-blank line of a tool's output, cut to 200 characters: the gist of its complaint."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def over_caps(info: VisualFacts, params: BrollParams) -> str | None:
    """Why a downloaded file breaks the configured caps, or None when it fits."""
    if info.duration_s is not None and info.duration_s > params.max_clip_s + 0.5:
        return f"{info.duration_s:.1f} s is longer than broll.max_clip_s={params.max_clip_s:g}"
    if info.media == "video" and info.height > params.max_height:
        return f"{info.height} px high is taller than broll.max_height={params.max_height}"
    return None

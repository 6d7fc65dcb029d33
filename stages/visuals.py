"""What a b-roll file is: its visual facts read with ffmpeg, and whether it fits the caps.

Responsible for: probing a clip or still (`ffmpeg -i` plus one decoded frame,
its stream summary read by stages/media.py) into `VisualFacts`, or the reason
it is unusable (`UnusableMedia`); the `Fetched` record a source makes of a file
before it becomes a Candidate; and the configured caps a download must fit. Not
responsible for finding or fetching files (the broll stage and stages/ytdlp.py).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ipc.params import BrollParams
from stages import media

PROBE_TIMEOUT_S = 60.0
IMAGE_DEMUXERS = ("image2",)


class UnusableMedia(Exception):
    """A file or URL that cannot become a candidate; the message is the recorded reason."""


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
        media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
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
    if returncode != 0:
        raise UnusableMedia(f"ffmpeg could not decode a frame ({last_line(stderr)})")
    if not picture.width:
        raise UnusableMedia("ffmpeg reported no frame size")
    width, height = picture.width, picture.height
    if re.search(r"rotation of -?(90|270)\.", stderr):
        width, height = height, width
    duration = facts.duration_s
    kind = demuxer.group(1)
    still = kind in IMAGE_DEMUXERS or kind.endswith("_pipe") or duration is None or duration <= 0.05
    return VisualFacts("still" if still else "video", width, height, None if still else duration)


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

"""Small shared ffmpeg helpers: where ffmpeg is, and what `ffmpeg -i FILE` says about a file.

There is no ffprobe in imageio-ffmpeg, so stream facts (duration, size, frame
rate, codecs) are parsed from the stream summary ffmpeg prints on stderr. This
module knows nothing about the pipeline: no artifacts, no stages.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio|Subtitle|Data): (.*)$", re.MULTILINE)
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+)(k?) fps\b")
_RATE = re.compile(r"(\d+) Hz")


class MediaError(Exception):
    """ffmpeg is missing, or a file is not media ffmpeg can read; the message names the file."""


@dataclass(frozen=True)
class StreamInfo:
    kind: str
    """"video", "audio", "subtitle" or "data"."""
    codec: str
    pix_fmt: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    sample_rate: int = 0
    attached_pic: bool = False
    """A video stream that is an audio file's cover art, not a picture to show."""


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def picture(self) -> StreamInfo | None:
        """The first video stream that is not cover art."""
        return next((s for s in self.streams if s.kind == "video" and not s.attached_pic), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise MediaError("imageio-ffmpeg is not installed; install it to get ffmpeg") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(path: Path, timeout_s: float = 60.0) -> MediaInfo:
    """Stream facts of `path`, from the summary `ffmpeg -i` prints."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False,
    )
    info = parse_probe(proc.stderr)
    if not info.streams:
        last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise MediaError(f"{path}: ffmpeg cannot read it ({last[0]})")
    return info


def parse_probe(stderr: str) -> MediaInfo:
    """Parse the stream summary that `ffmpeg -i FILE` prints on stderr."""
    duration = None
    if match := _DURATION.search(stderr):
        hours, minutes, seconds = match.groups()
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    streams = [_parse_stream(kind.lower(), rest) for kind, rest in _STREAM.findall(stderr)]
    return MediaInfo(duration_s=duration, streams=streams)


def _parse_stream(kind: str, rest: str) -> StreamInfo:
    parts = _split_top_level(rest)
    codec = parts[0].split()[0] if parts and parts[0] else ""
    if kind == "video":
        pix_fmt = parts[1].split("(")[0].strip() if len(parts) > 1 else ""
        size = _SIZE.search(rest)
        fps = _FPS.search(rest)
        return StreamInfo(
            kind=kind, codec=codec, pix_fmt=pix_fmt,
            width=int(size.group(1)) if size else 0, height=int(size.group(2)) if size else 0,
            fps=(float(fps.group(1)) * (1000 if fps.group(2) else 1)) if fps else 0.0,
            attached_pic="(attached pic)" in rest,
        )
    if kind == "audio":
        rate = _RATE.search(rest)
        return StreamInfo(kind=kind, codec=codec, sample_rate=int(rate.group(1)) if rate else 0)
    return StreamInfo(kind=kind, codec=codec)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: "yuv420p(tv, bt709)" stays one part."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts

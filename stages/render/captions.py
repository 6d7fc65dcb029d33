"""Caption files for the render stage: SRT, ASS with the spoken word highlighted, and the font they use.

The ASS style carries the look the timeline wrote down (`CaptionLook`: top, center or bottom or a height in
percent, size, text
and outline colours, outline width); `CaptionStyle` gives both renderers the same sizes and places.

The timeline decides which words are shown when; this module only writes them
down, each file created afresh (stages/common/outputs.py), and finds a font file,
since fontconfig may have none configured. It
encodes no video: the renderers burn `captions.ass` (ffmpeg/libass) or draw
the same events (MoviePy) themselves.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from aishorts.ipc.artifacts import Caption, CaptionLook, Timeline
from aishorts.ipc.languages import join_words
from aishorts.stages.common.outputs import write_text

FONT_ENV = "AISHORTS_FONT"
LATIN_END = 0x024F
"""Text up to Latin Extended-B is set in DejaVu Sans as it is; beyond, a font is checked to cover it."""
FONT_CHILD_TIMEOUT_S = 120.0
_KNOWN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)
# ASS colours are &HAABBGGRR.
HIGHLIGHT_COLOUR = "&H0000D7FF"
_TEXT_OVERRIDE = "&HFFFFFF&"
_HIGHLIGHT_OVERRIDE = "&H00D7FF&"
SHADOW_COLOUR = "&H80000000"
HIGHLIGHT_RGB = (255, 215, 0)


class FontMissing(Exception):
    """No usable font file; the message says how to provide one."""


@dataclass(frozen=True)
class Font:
    path: Path
    family: str


ALIGNMENTS = {"bottom": 2, "center": 5, "top": 8}
"""ASS numpad alignments, centred horizontally: bottom, middle, top."""


@dataclass(frozen=True)
class CaptionStyle:
    """Sizes in pixels of the output frame (ASS PlayRes equals the video size); the look the user chose
    (`ipc.artifacts.CaptionLook`: position, size, colours as #RRGGBB, outline)."""

    width: int
    height: int
    margin_v: int
    look: CaptionLook = CaptionLook()

    @property
    def font_size(self) -> int:
        """The size asked for; else 72 px in any of 1080x1920, 1920x1080 and 1080x1080 (by the shorter side)."""
        return self.look.size or round(min(self.width, self.height) / 15)

    @property
    def margin_h(self) -> int:
        return round(self.width * 0.083)

    @property
    def outline(self) -> float:
        if self.look.stroke_width is not None:
            return self.look.stroke_width
        return max(2, round(self.font_size * 0.07))

    @property
    def edge(self) -> str:
        """Where the block is anchored: the look's position, or for a height in percent (`look.y`) the nearer edge,
        so that a second line grows away from it and stays inside the frame."""
        if self.look.y is None:
            return self.look.position
        return "top" if self.look.y <= 50 else "bottom"

    @property
    def alignment(self) -> int:
        return ALIGNMENTS[self.edge]

    @property
    def text_rgb(self) -> tuple[int, int, int]:
        return rgb(self.look.color)

    @property
    def stroke_rgb(self) -> tuple[int, int, int]:
        return rgb(self.look.stroke_color)

    def top(self, block_height: int) -> int:
        """Where a block of caption lines this tall starts, from the top of the frame, for the chosen position."""
        if self.edge == "top":
            return self.margin_v
        if self.edge == "center":
            return (self.height - block_height) // 2
        return self.height - self.margin_v - block_height


def caption_style(timeline: Timeline) -> CaptionStyle:
    style = CaptionStyle(timeline.width, timeline.height, timeline.caption_margin_v, timeline.caption_look)
    if timeline.caption_look.y is None:
        return style
    # MoneyPrinterTurbo's custom position: a one-line caption's top at y% of the height the line leaves, measured
    # here from the nearer edge (`edge`)
    share = timeline.caption_look.y / 100
    return replace(style, margin_v=round((style.height - style.font_size) * min(share, 1 - share)))


def rgb(colour: str) -> tuple[int, int, int]:
    """#RRGGBB as red, green and blue."""
    value = int(colour.removeprefix("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def ass_colour(colour: str, alpha: int = 0, override: bool = False) -> str:
    """#RRGGBB in ASS's byte order: &HAABBGGRR for a style, &HBBGGRR& for an override tag."""
    red, green, blue = rgb(colour)
    if override:
        return f"&H{blue:02X}{green:02X}{red:02X}&"
    return f"&H{alpha:02X}{blue:02X}{green:02X}{red:02X}"


@dataclass(frozen=True)
class WordEvent:
    """One caption shown with word `highlight` lit, from `start` to `end`."""

    start: float
    end: float
    words: tuple[str, ...]
    highlight: int


def find_font(text: str = "") -> Font:
    """A bold sans font file that covers `text`: $AISHORTS_FONT, fontconfig, Debian/Arch paths, then matplotlib's
    DejaVu; for text beyond Latin, the first font that holds all its characters (stages/render/fonts.py)."""
    default = next((Path(c).resolve() for c in _font_candidates() if c and Path(c).is_file()), None)
    if any(ord(char) > LATIN_END for char in text):
        return _covering_font(text, default)
    if default is None:
        raise FontMissing(
            "no font file found for the captions; install one (Debian/Ubuntu: apt-get install fonts-dejavu-core)"
            f" or point {FONT_ENV} at a .ttf file"
        )
    return Font(default, _family(default))


def _covering_font(text: str, default: Path | None) -> Font:
    """The font stages/render/fonts.py finds for `text`, asked in a child process (fontTools and a CJK character map
    stay out of the render stage's memory)."""
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="aishorts-font-") as folder:
        text_file = Path(folder) / "captions.txt"
        text_file.write_text(text, encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-m", "aishorts.stages.render.fonts", str(text_file), str(default or "")],
                                  capture_output=True, text=True, timeout=FONT_CHILD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise FontMissing(f"finding a font for the captions took over {FONT_CHILD_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise FontMissing(said[-1] if said else f"finding a font for the captions failed (exit {done.returncode})")
    found = json.loads(done.stdout)
    return Font(Path(found["path"]), found["family"])


def _font_candidates() -> list[str]:
    found = [os.environ.get(FONT_ENV, "")]
    if shutil.which("fc-match"):
        try:
            proc = subprocess.run(["fc-match", "-f", "%{file}", "DejaVu Sans:bold"],
                                  capture_output=True, text=True, timeout=10, check=False)
            if proc.stdout.lower().endswith((".ttf", ".otf")):
                found.append(proc.stdout)
        except (OSError, subprocess.TimeoutExpired):
            pass
    found += list(_KNOWN_FONTS)
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        base = Path(next(iter(spec.submodule_search_locations)))
        found.append(str(base / "mpl-data" / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"))
    return found


def _family(path: Path) -> str:
    try:
        from PIL import ImageFont

        return ImageFont.truetype(str(path), 12).getname()[0] or path.stem
    except (ImportError, OSError):
        return path.stem


def word_events(captions: list[Caption]) -> list[WordEvent]:
    """Per-word events: each caption repeated once per word, that word lit, back to back in time."""
    events: list[WordEvent] = []
    for caption in captions:
        texts = tuple(clean_text(w.text) for w in caption.words)
        for k, word in enumerate(caption.words):
            start = caption.start if k == 0 else max(word.start, events[-1].end)
            end = caption.words[k + 1].start if k + 1 < len(caption.words) else caption.end
            end = min(max(end, start), caption.end)
            if end - start >= 0.01:
                events.append(WordEvent(start, end, texts, k))
    return events


def clean_text(text: str) -> str:
    """Caption text without ASS override braces, backslashes or line breaks."""
    return " ".join(text.replace("{", "(").replace("}", ")").replace("\\", "/").split())


def write_srt(captions: list[Caption], path: Path) -> None:
    blocks = []
    for number, caption in enumerate(captions, start=1):
        text = clean_text(caption.text)
        blocks.append(f"{number}\n{_srt_time(caption.start)} --> {_srt_time(caption.end)}\n{text}\n")
    write_text(path, "\n".join(blocks))


def write_ass(captions: list[Caption], path: Path, font: Font, style: CaptionStyle) -> None:
    lines = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {style.width}",
        f"PlayResY: {style.height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic,"
        " Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment,"
        " MarginL, MarginR, MarginV, Encoding",
        f"Style: Caption,{font.family},{style.font_size},{ass_colour(style.look.color)},{HIGHLIGHT_COLOUR},"
        f"{ass_colour(style.look.stroke_color)},{SHADOW_COLOUR},-1,0,0,0,100,100,0,0,1,{style.outline:g},2,"
        f"{style.alignment},{style.margin_h},{style.margin_h},{style.margin_v},1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    for event in word_events(captions):
        lines.append(
            f"Dialogue: 0,{_ass_time(event.start)},{_ass_time(event.end)},Caption,,0,0,0,,"
            f"{_ass_text(event, ass_colour(style.look.color, override=True))}"
        )
    write_text(path, "\n".join(lines) + "\n")


def _ass_text(event: WordEvent, text_colour: str = _TEXT_OVERRIDE) -> str:
    """The caption's words, the lit one coloured, spaced as their script writes them (none between CJK words)."""
    text = ""
    for k, word in enumerate(event.words):
        if k and join_words([event.words[k - 1], word]) != event.words[k - 1] + word:
            text += " "
        text += f"{{\\1c{_HIGHLIGHT_OVERRIDE}}}{word}{{\\1c{text_colour}}}" if k == event.highlight else word
    return text


def _clock(seconds: float, per_second: int) -> tuple[int, int, int, int]:
    """Hours, minutes, seconds and the fraction in 1/`per_second` units, rounded once."""
    ticks = max(0, round(seconds * per_second))
    hours, rest = divmod(ticks, 3600 * per_second)
    minutes, rest = divmod(rest, 60 * per_second)
    secs, fraction = divmod(rest, per_second)
    return hours, minutes, secs, fraction


def _srt_time(seconds: float) -> str:
    hours, minutes, secs, millis = _clock(seconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def _ass_time(seconds: float) -> str:
    hours, minutes, secs, centis = _clock(seconds, 100)
    return f"{hours:d}:{minutes:02d}:{secs:02d}.{centis:02d}"

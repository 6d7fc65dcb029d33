"""Caption fonts for scripts beyond Latin: a font file that covers the captions' text, made small and bold.

Responsible for: finding, for text that DejaVu Sans may not cover (Chinese,
Japanese, Devanagari ...), a font whose character map holds every character
of it: $AISHORTS_FONT, DejaVu Sans, Noto Sans CJK (PyPI manimgx-fonts-cjk:
the JP face for text with kana, else SC), Noto Sans Devanagari (PyPI
fontpkg-noto-sans-devanagari), then any font fontconfig knows with those
characters (Debian fonts-noto-cjk ...); and, for a variable font or a font
collection, a static bold copy holding only the glyphs the text needs (about
10 KB for a short's captions instead of 32 MB), written once into the cache.
Run as `python -m aishorts.stages.render.fonts TEXT_FILE` in a child process by
stages/render/captions.py, so the render stage's own memory does not carry
fontTools and a 44,000-glyph character map (120 MB at peak); it prints the
font as JSON, or why none covers the text (exit 1).

Not responsible for writing captions or copying the font into render/fonts/
(stages/render/captions.py, stages/render/stage.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from aishorts.stages.common.cache import cache_root

BOLD = 700
MAX_FC_CHARS = 16
"""At most this many of the uncovered characters are asked of fontconfig at once."""


@dataclass(frozen=True)
class Source:
    path: Path
    index: int = 0
    """The face in a font collection (.ttc)."""


class NoFont(Exception):
    """No font covers the text; the message names the characters and how to get a font for them."""


def needed_chars(text: str) -> dict[str, None]:
    """The characters a font must hold for `text`, in order of first appearance."""
    return dict.fromkeys(char for char in text if not char.isspace())


def caption_font(text: str, default: Path | None) -> tuple[Path, str]:
    """(font file, family name) covering every character of `text`: a source font as is when it is a static
    single font, else a small static bold copy of it in the cache. NoFont when none covers the text."""
    chars = needed_chars(text)
    missing = chars
    for source in _candidates(text, default, chars):
        try:
            cmap = _cmap(source)
        except (OSError, ValueError, KeyError, AssertionError):
            continue  # not a font fontTools can read: try the next
        missing = [char for char in chars if ord(char) not in cmap]
        if not missing:
            return _usable(source, text)
    raise NoFont(_no_font_message(list(missing or chars)))


def _candidates(text: str, default: Path | None, chars: dict[str, None]) -> list[Source]:
    found = [Source(Path(os.environ["AISHORTS_FONT"]))] if os.environ.get("AISHORTS_FONT") else []
    if default is not None:
        found.append(Source(default))
    cjk = _package_file("manimgx_fonts_cjk", "NotoSansCJK-VF.otf.ttc")
    if cjk is not None:
        found.append(Source(cjk, 0 if _has_kana(text) else 2))  # faces: JP, KR, SC, TC, HK
    devanagari = _package_file("fontpkg_noto_sans_devanagari", "files/NotoSansDevanagari[wdth,wght].ttf")
    if devanagari is not None:
        found.append(Source(devanagari))
    found += _fontconfig_fonts(chars)
    return [source for source in found if source.path.is_file()]


def _has_kana(text: str) -> bool:
    return any(0x3040 <= ord(char) <= 0x30FF for char in text)


def _package_file(package: str, name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / name


def _fontconfig_fonts(chars: dict[str, None]) -> list[Source]:
    """Fonts fontconfig knows that hold the first few of `chars`, bold ones first."""
    if not shutil.which("fc-list"):
        return []
    wanted = " ".join(f"{ord(char):x}" for char in list(chars)[:MAX_FC_CHARS])
    try:
        listed = subprocess.run(["fc-list", f":charset={wanted}", "--format", "%{file}|%{index}|%{weight}\n"],
                                capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = []
    for line in listed.splitlines():
        path, _, rest = line.partition("|")
        index, _, weight = rest.partition("|")
        if path and index.isdigit():
            rows.append((-_number(weight), Source(Path(path), int(index))))
    return [source for _, source in sorted(rows, key=lambda row: (row[0], str(row[1].path)))]


def _number(text: str) -> float:
    try:
        return float(text.strip("[] ").split()[0])
    except (ValueError, IndexError):
        return 0.0


def _open(source: Source, lazy: bool = True):
    from fontTools.ttLib import TTFont

    return TTFont(str(source.path), fontNumber=source.index, lazy=lazy)


def _cmap(source: Source) -> dict[int, str]:
    return _open(source).getBestCmap() or {}


def _family(font) -> str:
    return font["name"].getDebugName(16) or font["name"].getDebugName(1) or "sans"


def _usable(source: Source, text: str) -> tuple[Path, str]:
    """The source as it is when it is one static font; else a bold static subset for `text`, cached."""
    font = _open(source)
    if "fvar" not in font and source.path.suffix.lower() not in (".ttc", ".otc"):
        return source.path, _family(font)
    key = hashlib.sha256(
        f"{source.path}|{source.index}|{source.path.stat().st_size}|{BOLD}|{''.join(sorted(needed_chars(text)))}"
        .encode()).hexdigest()[:16]
    family = _family(font)
    target = cache_root() / "fonts" / f"{family.replace(' ', '')}-Bold-{key}{_suffix(font)}"
    if not target.is_file():
        _write_bold_subset(_open(source, lazy=False), text, target)
    return target, family


def _suffix(font) -> str:
    return ".otf" if "CFF " in font or "CFF2" in font else ".ttf"


def _write_bold_subset(font, text: str, target: Path) -> None:
    from fontTools import subset
    from fontTools.varLib import instancer

    options = subset.Options()
    options.layout_features = ["*"]  # keep the shaping rules (Devanagari conjuncts, CJK punctuation forms)
    options.name_IDs = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(needed_chars(text))) + " ")
    subsetter.subset(font)
    if "fvar" in font:
        axes = {axis.axisTag: axis for axis in font["fvar"].axes}
        weight = min(max(BOLD, axes["wght"].minValue), axes["wght"].maxValue) if "wght" in axes else None
        pinned = {tag: (weight if tag == "wght" else axis.defaultValue) for tag, axis in axes.items()}
        font = instancer.instantiateVariableFont(font, pinned)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        font.save(str(partial))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _no_font_message(missing: list[str]) -> str:
    sample = "".join(missing[:12])
    return (
        f"no font covers the captions' characters {sample!r}; install one: pip install manimgx-fonts-cjk"
        " (Chinese, Japanese) or fontpkg-noto-sans-devanagari (Hindi), or apt-get install fonts-noto-cjk"
        " fonts-noto-core, or point AISHORTS_FONT at a .ttf/.otf that has them"
    )


def main(argv: list[str]) -> int:
    text = Path(argv[0]).read_text(encoding="utf-8")
    default = Path(argv[1]) if len(argv) > 1 and argv[1] else None
    try:
        path, family = caption_font(text, default)
    except NoFont as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps({"path": str(path), "family": family}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

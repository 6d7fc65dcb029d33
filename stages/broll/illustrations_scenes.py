"""Scenes from illustrations: what a sentence's visual shows, and the still that shows it.

Responsible for: choosing, for each sentence (or b-roll query), the one or two
library illustrations that fit it best (`choose_scenes`: the sentence and its
noun phrases searched in the index of stages/broll/illustrations.py, signs ranked
below pictures, an illustration already shown ranked lower), a background
palette that suits the script (`choose_palette`), composing a vertical still
of them (`compose`: a gradient with soft light, the illustrations large in the
upper part, the caption band below kept calm and dark), and the credits for
the illustrations used (`credits_text`). Not responsible for the index itself
(stages/broll/illustrations.py), nor for which candidate a sentence finally gets
(the match stage).
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from aishorts.ipc.artifacts import Theme
from aishorts.stages.broll.illustrations import Illustration, Library, similarities
from aishorts.stages.common.broll_queries import derive_queries
from aishorts.stages.common.outputs import create, removed_on_failure



@dataclass(frozen=True)
class SceneFrame:
    """Where a scene puts things, for one aspect: its size, and the bands (fractions of its height) that the
    illustrations fill and that the captions cross (stages/timeline/stage.py's CAPTION_MARGINS)."""

    size: tuple[int, int]
    picture_box: tuple[float, float]
    caption_band: tuple[float, float]


SCENE_FRAMES = {
    "9:16": SceneFrame((1216, 2160), (0.06, 0.56), (0.56, 0.84)),
    "16:9": SceneFrame((2160, 1216), (0.06, 0.68), (0.66, 0.95)),
    "1:1": SceneFrame((1216, 1216), (0.05, 0.62), (0.60, 0.90)),
}
"""Each about 12% larger than the video's frame (ipc.params.FRAME_SIZES), so the timeline's pan and zoom stay
sharp; captions sit in the band below the pictures."""
SCENE_SIZE = SCENE_FRAMES["9:16"].size
SYMBOL_PENALTY = 0.08
REUSE_PENALTY = 0.05
PHRASE_LIFT = 0.5
SECOND_MIN_SCORE = 0.45
"""A second illustration joins a scene when it scores at least this."""
HITS_PER_TEXT = 8
SVG_DPI = 96.0
"""resvg_py's default of 0 turns sizes in pt, mm or in into nothing ("SVG has an invalid size")."""


@dataclass(frozen=True)
class Pick:
    """An illustration chosen for a scene: its index in the library, how well it scored, and for what."""

    item: int
    score: float
    matched: str
    """The text it matched: the sentence itself or one of its phrases."""


@dataclass(frozen=True)
class Scene:
    text: str
    picks: tuple[Pick, ...]


class Palette(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A scene's background (palettes.toml): chosen by how near its `words` are to the script."""

    name: str
    words: str
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    light: tuple[int, int, int]


class _Palettes(msgspec.Struct, forbid_unknown_fields=True):
    palette: tuple[Palette, ...]


PALETTES = msgspec.toml.decode(Path(__file__).with_name("palettes.toml").read_bytes(), type=_Palettes).palette


@dataclass(frozen=True)
class ComposedScene:
    """A scene drawn to a PNG: what it was made for, what it shows, and the illustrations in it."""

    id: str
    path: Path
    text: str
    title: str
    description: str
    tags: list[str]
    items: list[Illustration]


def illustrate(
    texts: list[str], topic: list[str], folder: Path, progress: Callable[[str, float], None] | None = None,
    aspect: str = "9:16",
) -> list[ComposedScene]:
    """One composed still per text, written as `folder/scene-NN.png` and drawn for the `aspect` frame;
    `topic` (title, sentences) sets the palette."""
    from aishorts.stages.broll.illustrations import load_library
    from aishorts.stages.common.text_embedding import embed_texts

    progress = progress or (lambda message, fraction: None)
    library = load_library(progress=lambda message: progress(message, 0.05))
    scenes = choose_scenes(library, texts, embed_texts)
    palette = choose_palette(topic, embed_texts)
    composed = []
    for number, scene in enumerate(scenes, start=1):
        progress(f"drawing scene {number} of {len(scenes)}", 0.1 + 0.85 * (number - 1) / len(scenes))
        items = [library.items[p.item] for p in scene.picks]
        scene_id = f"scene-{number:02d}"
        path = compose(scene, library, palette, folder / f"{scene_id}.png", seed=number, aspect=aspect)
        tags = list(dict.fromkeys([i.title for i in items] + [k for i in items for k in i.keywords[:6]]))
        composed.append(ComposedScene(
            scene_id, path, scene.text, " and ".join(i.title for i in items),
            describe(scene, library, palette), tags[:20], items,
        ))
    return composed


# ---------------------------------------------------------------- what each scene shows


def choose_scenes(library: Library, texts: list[str], embed) -> list[Scene]:
    """For each text, the one or two illustrations that fit it best; `embed` is stages.common.text_embedding.embed_texts.

    An illustration's score for a sentence is its cosine with the whole
    sentence, raised halfway towards its cosine with one of the sentence's noun
    phrases when that is higher: "three hearts" finds the anatomical heart in
    "Octopuses have three hearts", while a phrase alone ("air" -> a fly) cannot
    outvote what the sentence is about.
    """
    import numpy as np

    groups = [[text, *(p for p in derive_queries([text], _NO_THEME) if p.lower() != text.lower())] for text in texts]
    phrases = [t for group in groups for t in group[1:]]
    sentence_rows = iter(similarities(library, embed(texts)))
    phrase_rows = iter(similarities(library, embed(phrases)))
    similarity = np.stack([next(sentence_rows) if i == 0 else next(phrase_rows)
                           for group in groups for i in range(len(group))])
    penalty = SYMBOL_PENALTY * np.array([item.symbol for item in library.items], dtype=np.float32)
    uses = np.zeros(len(library.items), dtype=np.float32)
    scenes = []
    at = 0
    for text, group in zip(texts, groups):
        rows = similarity[at:at + len(group)]
        at += len(group)
        picks = _best_picks(library, group, rows, penalty + REUSE_PENALTY * uses)
        for pick in picks:
            uses[pick.item] += 1
        scenes.append(Scene(text, tuple(picks)))
    return scenes


_NO_THEME = Theme(topic="", angle="", keywords=[])


def _best_picks(library: Library, group: list[str], rows, penalty) -> list[Pick]:
    import numpy as np

    sentence = rows[0]
    lift = np.maximum(rows[1:].max(axis=0) - sentence, 0.0) if len(rows) > 1 else np.zeros_like(sentence)
    via = rows.argmax(axis=0)
    score = sentence + PHRASE_LIFT * lift - penalty
    order = [int(i) for i in np.argsort(-score)[:HITS_PER_TEXT] if drawable(library.items[int(i)].path)]
    if not order:  # none of the best few can be drawn: the best drawable one anywhere
        order = [next(int(i) for i in np.argsort(-score) if drawable(library.items[int(i)].path))]
    first = Pick(order[0], float(score[order[0]]), group[int(via[order[0]])])
    for index in order[1:]:
        other = Pick(int(index), float(score[index]), group[int(via[index])])
        if other.score < SECOND_MIN_SCORE:
            break
        if other.matched == first.matched and first.matched != group[0]:
            continue  # a second picture of the same phrase adds nothing
        if library.items[other.item].symbol or _same_thing(library.items[first.item], library.items[other.item]):
            continue  # a sign beside a picture, or a second rendering of the same thing, adds nothing
        return [first, other]
    return [first]


@functools.lru_cache(maxsize=4096)
def drawable(path: str) -> bool:
    """Whether the file can be drawn: some clip art has no size resvg can use, or is damaged."""
    try:
        rasterise_file(path, 32)
    except (OSError, ValueError, SyntaxError):
        return False
    return True


def _same_thing(a: Illustration, b: Illustration) -> bool:
    """Two renderings of one thing ("sun", "sun with face"): one of them is enough in a scene."""
    words_a, words_b = set(a.title.split()), set(b.title.split())
    return bool(words_a & words_b) and (words_a <= words_b or words_b <= words_a)


def choose_palette(texts: list[str], embed) -> Palette:
    """The background palette whose words are nearest the script's texts (its title and sentences), on average.

    Each text is embedded on its own and the vectors averaged: one long text
    would cost the encoder far more memory than several short ones.
    """
    import numpy as np

    vectors = embed([*texts, *(p.words for p in PALETTES)])
    topic = vectors[: len(texts)].mean(axis=0)
    return PALETTES[int(np.argmax(vectors[len(texts):] @ topic))]


def describe(scene: Scene, library: Library, palette: Palette) -> str:
    """What the composed still shows, in words the match stage reads."""
    names = " and ".join(_article(library.items[p.item].title) for p in scene.picks)
    return f"An illustration of {names}, on a {palette.name} background."


def _article(title: str) -> str:
    plural = title.endswith("s") and not title.endswith(("us", "ss", "is"))
    if title.split()[0] in {"a", "an", "the", "flag:"} or plural:
        return title
    return ("an " if title[0] in "aeiou" else "a ") + title


# ---------------------------------------------------------------- the still


def compose(scene: Scene, library: Library, palette: Palette, path: Path, seed: int, aspect: str = "9:16") -> Path:
    """Draw the scene as a new PNG at `path`: background, soft light, the illustrations, a calm caption band."""
    from PIL import Image

    frame = SCENE_FRAMES[aspect]
    width, height = frame.size
    canvas = background(palette, seed, frame.size)
    boxes = _layout(len(scene.picks), width, height, frame.picture_box)
    for cx, cy, side in boxes:
        _glow(canvas, palette, cx, cy, side)
    for pick, (cx, cy, side) in zip(scene.picks, boxes):
        item = library.items[pick.item]
        # an OpenMoji drawing fills about the middle 80% of its square: drawn larger, it fills the box
        art = rasterise(item, round(side * (1.15 if item.source == "openmoji" else 1.0)))
        _shadowed_paste(canvas, art, cx, cy)
    canvas = Image.alpha_composite(canvas, _caption_band(width, height, frame.caption_band))
    with removed_on_failure(path), create(path) as handle:
        canvas.convert("RGB").save(handle, format="PNG", optimize=False, compress_level=6)
    return path


def background(palette: Palette, seed: int, size: tuple[int, int] = SCENE_SIZE):
    """A vertical gradient in the palette's colours with a few soft, out-of-focus lights (seeded: reproducible)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    mix = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    rows = np.array(palette.top, np.float32) * (1 - mix) + np.array(palette.bottom, np.float32) * mix
    column = Image.fromarray(rows.round().astype(np.uint8)[:, None, :])  # one pixel wide: widened by Pillow
    canvas = column.resize((width, height), Image.Resampling.NEAREST).convert("RGBA")
    small = Image.new("RGBA", (width // 4, height // 4), (0, 0, 0, 0))
    draw = ImageDraw.Draw(small)
    rng = random.Random(seed)
    for _ in range(14):
        x, y = rng.uniform(0, small.width), rng.uniform(0, small.height)
        r = rng.uniform(small.width * 0.04, small.width * 0.16)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(*palette.light, rng.randint(18, 55)))
    lights = small.filter(ImageFilter.GaussianBlur(6)).resize((width, height), Image.Resampling.BILINEAR)
    return Image.alpha_composite(canvas, lights)


def _layout(count: int, width: int, height: int, box: tuple[float, float]) -> list[tuple[int, int, int]]:
    """Centre and side of each illustration's square box inside the picture band `box` (fractions of the height):
    two overlap on a diagonal in a tall frame and stand side by side in a square or wide one."""
    top, bottom = (round(f * height) for f in box)
    if count == 1:
        side = min(round(width * 0.8), bottom - top)
        return [(width // 2, (top + bottom) // 2, side)]
    # kept inside the middle 86% of the width: the timeline's zoom crops up to 6% on each side
    if height > width:
        side = round(width * 0.5)
        return [(round(width * 0.32), top + side // 2, side), (round(width * 0.68), bottom - side // 2, side)]
    side = min(round(width * 0.42), bottom - top)
    middle = (top + bottom) // 2
    return [(round(width * 0.5) - round(side * 0.52), middle, side), (round(width * 0.5) + round(side * 0.52), middle, side)]


def rasterise(item: Illustration, side: int):
    """The illustration as RGBA, fitted inside a `side` x `side` square (SVG by resvg, PNG by Pillow)."""
    return rasterise_file(item.path, side)


def rasterise_file(path: str, side: int):
    from PIL import Image

    if path.lower().endswith(".svg"):
        import resvg_py

        png = bytes(resvg_py.svg_to_bytes(svg_path=path, width=side, dpi=SVG_DPI))
        image = Image.open(io.BytesIO(png))
        if image.height > side:
            png = bytes(resvg_py.svg_to_bytes(svg_path=path, height=side, dpi=SVG_DPI))
            image = Image.open(io.BytesIO(png))
    else:
        image = Image.open(path)
    image = image.convert("RGBA")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    if max(image.size) < side * 0.9:  # small bitmaps (stamps) are scaled up to fill the box
        scale = side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return image


def _glow(canvas, palette: Palette, cx: int, cy: int, side: int) -> None:
    """A soft disc of light behind an illustration, so it stands off any background."""
    from PIL import Image, ImageDraw, ImageFilter

    scale = 4
    size = side // scale
    halo = Image.new("RGBA", (size * 2, size * 2), (0, 0, 0, 0))
    ImageDraw.Draw(halo).ellipse((size * 0.35, size * 0.35, size * 1.65, size * 1.65), fill=(*palette.light, 120))
    halo = halo.filter(ImageFilter.GaussianBlur(size * 0.12)).resize((side * 2, side * 2), Image.Resampling.BILINEAR)
    canvas.alpha_composite(halo, (cx - side, cy - side))


def _shadowed_paste(canvas, art, cx: int, cy: int) -> None:
    from PIL import Image, ImageFilter

    x, y = cx - art.width // 2, cy - art.height // 2
    alpha = art.getchannel("A").point(lambda a: a * 0.35)
    shadow = Image.new("RGBA", art.size, (0, 0, 0, 0))
    shadow.putalpha(alpha.filter(ImageFilter.GaussianBlur(10)))
    canvas.alpha_composite(shadow, (x + 12, y + 22))
    canvas.alpha_composite(art, (x, y))


def _caption_band(width: int, height: int, band: tuple[float, float]):
    """Black that rises and falls across the caption band (at most 45% opaque): white captions stay readable."""
    import numpy as np
    from PIL import Image

    top, bottom = (round(f * height) for f in band)
    alpha = np.zeros(height, np.float32)
    ramp = np.linspace(0.0, 1.0, bottom - top, dtype=np.float32)
    alpha[top:bottom] = np.minimum(ramp * 3, 1.0) * np.minimum((1 - ramp) * 3, 1.0) * 115
    column = np.zeros((height, 1, 4), np.uint8)
    column[..., 3] = alpha[:, None].astype(np.uint8)
    return Image.fromarray(column).resize((width, height), Image.Resampling.NEAREST)


# ---------------------------------------------------------------- credits


def credits_text(used: list[tuple[str, list[Illustration]]]) -> str:
    """credits.txt: every illustration in the scenes (by scene id), its source, file and licence."""
    lines = [
        "Illustrations in this short's b-roll (the aishorts-runner built-in library)",
        "",
        "Publish these credits with the video (e.g. in its description). OpenMoji's emoji are licensed",
        "CC BY-SA 4.0: credit OpenMoji, link the licence, and share changed versions of the pictures under",
        "the same licence. Openclipart is public domain; Tux Paint stamps are GNU GPL 2.0 or later.",
        "",
    ]
    attributions: dict[str, str] = {}
    for scene_id, items in used:
        for item in items:
            lines.append(f"{scene_id}: {item.title} | {item.source} {Path(item.path).name} | {item.licence}")
            attributions.setdefault(item.source, item.attribution.split(": ", 1)[-1])
    lines += ["", "Sources:"] + [f"- {source}: {text}" for source, text in sorted(attributions.items())]
    return "\n".join(lines) + "\n"

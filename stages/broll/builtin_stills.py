"""The built-in b-roll library: scikit-image's sample photographs, written out as PNG stills.

These are the visuals a run falls back on when it has no network and no local
folder. Only images shipped inside the installed scikit-image package are
listed (the ones that need `pooch` to download are left out), each with a short
description of what it really shows and tags a text matcher can use; the list
is the data file `builtin_stills.toml` beside this module. This module does not
choose which still fits a sentence (that is `stages.match`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from aishorts.stages.common.outputs import create, removed_on_failure


@dataclass(frozen=True)
class BuiltinStill:
    name: str
    """The `skimage.data` function that returns the image."""
    title: str
    description: str
    tags: tuple[str, ...]


def _library(path: Path) -> tuple[BuiltinStill, ...]:
    with path.open("rb") as handle:
        rows = tomllib.load(handle)["still"]
    return tuple(BuiltinStill(row["name"], row["title"], row["description"], tuple(row["tags"])) for row in rows)


LIBRARY = _library(Path(__file__).with_name("builtin_stills.toml"))


def load_pixels(still: BuiltinStill):
    """The still's pixels as a numpy array; raises if the image is not available offline."""
    import skimage.data

    pixels = getattr(skimage.data, still.name)()
    # stereo_motorcycle returns (left, right, disparity); the left view is the photograph
    return pixels[0] if isinstance(pixels, tuple) else pixels


def write_png(still: BuiltinStill, folder: Path) -> Path:
    """Write the still as a new file `<folder>/builtin-<name>.png` and return its path."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"builtin-{still.name}.png"
    image = Image.fromarray(load_pixels(still))
    with removed_on_failure(path), create(path) as handle:
        image.save(handle, format="PNG")
    return path

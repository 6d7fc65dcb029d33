"""The built-in b-roll library: scikit-image's sample photographs, written out as PNG stills.

These are the visuals a run falls back on when it has no network and no local
folder. Only images shipped inside the installed scikit-image package are
listed (the ones that need `pooch` to download are left out), each with a short
description of what it really shows and tags a text matcher can use. This
module does not choose which still fits a sentence (that is `stages.match`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.outputs import create, removed_on_failure


@dataclass(frozen=True)
class BuiltinStill:
    name: str
    """The `skimage.data` function that returns the image."""
    title: str
    description: str
    tags: tuple[str, ...]


LIBRARY: tuple[BuiltinStill, ...] = (
    BuiltinStill(
        "astronaut", "Astronaut portrait",
        "NASA astronaut Eileen Collins smiling in an orange flight suit,"
        " with a US flag and a space shuttle model behind her.",
        ("astronaut", "space", "nasa", "spaceflight", "portrait", "woman", "flag"),
    ),
    BuiltinStill(
        "coffee", "Cup of coffee",
        "A cup of espresso on a red saucer with a spoon, on a wooden table, seen from above.",
        ("coffee", "espresso", "cup", "drink", "cafe", "table", "morning"),
    ),
    BuiltinStill(
        "chelsea", "Tabby cat",
        "Close-up of a tabby cat's face looking straight at the camera.",
        ("cat", "pet", "animal", "tabby", "face", "whiskers"),
    ),
    BuiltinStill(
        "rocket", "Rocket on the launch pad",
        "A SpaceX Falcon 9 rocket standing on its launch pad at dusk, lit by floodlights between tall towers.",
        ("rocket", "launch", "spacex", "space", "spaceflight", "night"),
    ),
    BuiltinStill(
        "camera", "Cameraman",
        "Black-and-white photo of a man in a dark coat looking through a camera on a tripod in a grassy field.",
        ("camera", "photographer", "cameraman", "tripod", "man", "black and white"),
    ),
    BuiltinStill(
        "coins", "Ancient coins",
        "Black-and-white photo of about two dozen ancient Greek coins laid out in rows on a dark background.",
        ("coins", "money", "ancient", "greek", "history", "currency"),
    ),
    BuiltinStill(
        "moon", "Surface of the Moon",
        "Grayscale, low-contrast close-up of the cratered surface of the Moon.",
        ("moon", "lunar", "crater", "surface", "space", "astronomy"),
    ),
    BuiltinStill(
        "hubble_deep_field", "Hubble deep field",
        "The Hubble eXtreme Deep Field: thousands of distant galaxies as coloured specks on a black sky.",
        ("galaxies", "universe", "deep space", "hubble", "telescope", "astronomy", "stars"),
    ),
    BuiltinStill(
        "retina", "Human retina",
        "Colour photograph of the back of a human eye: the retina, its optic disc"
        " and branching blood vessels on orange-red.",
        ("eye", "retina", "medicine", "blood vessels", "anatomy", "health"),
    ),
    BuiltinStill(
        "immunohistochemistry", "Stained tissue under a microscope",
        "Microscope image of human tissue stained for immunohistochemistry:"
        " brown cell clusters in blue-stained tissue.",
        ("microscope", "tissue", "cells", "biology", "medicine", "laboratory", "pathology"),
    ),
    BuiltinStill(
        "grass", "Grass texture",
        "Grayscale texture of dense grass blades filling the frame.",
        ("grass", "lawn", "plants", "nature", "texture"),
    ),
    BuiltinStill(
        "gravel", "Gravel texture",
        "Grayscale texture of small gravel stones filling the frame.",
        ("gravel", "stones", "pebbles", "rocks", "ground", "texture"),
    ),
    BuiltinStill(
        "brick", "Brick wall",
        "Grayscale photo of a brick wall seen at an angle.",
        ("brick", "wall", "building", "construction", "texture"),
    ),
    BuiltinStill(
        "page", "Printed page",
        "Black-and-white scan of a printed page headed 'Region-based segmentation', with paragraphs of text.",
        ("page", "text", "document", "paper", "reading", "book"),
    ),
    BuiltinStill(
        "colorwheel", "Colour wheel",
        "A colour wheel: the full hue spectrum arranged in a circle, fading to white at the centre, on black.",
        ("colour", "color", "rainbow", "spectrum", "hue", "design", "art"),
    ),
    BuiltinStill(
        "stereo_motorcycle", "Red motorcycle",
        "A red motorcycle parked in a garage, with shelves and cardboard boxes behind it.",
        ("motorcycle", "motorbike", "vehicle", "garage", "red"),
    ),
)


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

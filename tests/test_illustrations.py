"""The illustrated library: its index in the cache, matching texts to illustrations, scenes, optional sources, credits.

Everything here is real: the installed OpenMoji SVGs, the index built with the
real all-MiniLM-L6-v2 int8 encoder (stages/common/text_embedding.py), resvg drawing the
SVGs and Pillow composing the stills. Openclipart and Tux Paint are Debian
packages this machine need not have: their readers run on small real files laid
out as those packages lay them out (an SVG with its RDF metadata, a PNG stamp
with its description file), and their absence is the default case.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aishorts.stages.broll import illustrations
from aishorts.stages.broll.illustrations import (
    installed_sources, load_library, missing_optional_sources, openclipart_source, read_openclipart, tuxpaint_source,
)
from aishorts.stages.broll.illustrations_scenes import (
    PALETTES, SCENE_SIZE, Scene, choose_palette, choose_scenes, compose, credits_text, describe, drawable, rasterise,
)
from aishorts.stages.broll.visuals import probe_media
from aishorts.stages.common.text_embedding import embed_texts

CLIPART_SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="200" height="300" viewBox="0 0 200 300">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>Clipart by Jane Doe - {title}</dc:title>
    <dc:description>{description}</dc:description>
    <dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
    <dc:creator><cc:Agent><dc:title>Jane Doe</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
  <ellipse cx="100" cy="110" rx="80" ry="100" fill="#d62828"/>
  <path d="M100 210 L100 300" stroke="#333" stroke-width="4"/>
</svg>
"""


def clipart(folder: Path, name: str, title: str, description: str, keywords: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.svg"
    bag = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    path.write_text(CLIPART_SVG.format(title=title, description=description, keywords=bag))
    return path


def stamp(folder: Path, name: str, description: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    Image.new("RGBA", (120, 90), (40, 160, 60, 255)).save(path)
    if description is not None:
        path.with_suffix(".txt").write_text(f"{description}\nfr=Une description\n")
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A cache of its own, so the first load really builds the index."""
    folder = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("AISHORTS_CACHE")
    os.environ["AISHORTS_CACHE"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("AISHORTS_CACHE", None)
    else:
        os.environ["AISHORTS_CACHE"] = saved


@pytest.fixture(scope="module")
def openmoji_only(tmp_path_factory):
    nowhere = tmp_path_factory.mktemp("not-installed")
    return installed_sources(openclipart_root=nowhere / "openclipart", tuxpaint_root=nowhere / "tuxpaint")


@pytest.fixture(scope="module")
def library(cache_dir, openmoji_only):
    return load_library(openmoji_only)


def titles(library, scene: Scene) -> list[str]:
    return [library.items[p.item].title for p in scene.picks]


# ---------------------------------------------------------------- the index


def test_the_index_is_built_once_into_the_cache_as_items_and_unit_vectors(cache_dir, openmoji_only, library):
    assert library.folder.parent == cache_dir / "illustrations"
    assert sorted(p.name for p in library.folder.iterdir()) == ["index.json", "vectors.npy"]
    assert library.vectors.shape == (len(library.items), 384) and library.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(library.vectors[:50], axis=1), 1.0, atol=1e-3)
    assert [s.name for s in library.index.sources] == ["openmoji"]
    assert library.index.sources[0].items == len(library.items) > 1500

    stamp_before = (library.folder / "index.json").stat().st_mtime_ns
    again = load_library(openmoji_only)
    assert again.folder == library.folder
    assert (library.folder / "index.json").stat().st_mtime_ns == stamp_before
    assert len(list((cache_dir / "illustrations").iterdir())) == 2  # the index folder and its lock file


def test_each_openmoji_item_has_its_name_a_file_and_its_licence(library):
    by_id = {item.id: item for item in library.items}
    octopus = by_id["openmoji-1F419"]
    assert octopus.title == "octopus" and octopus.source == "openmoji"
    assert Path(octopus.path).is_file() and octopus.path.endswith("1F419.svg")
    assert "CC BY-SA 4.0" in octopus.licence and "OpenMoji" in octopus.attribution
    assert by_id["openmoji-1FAC0"].title == "anatomical heart" and not by_id["openmoji-1FAC0"].symbol
    assert by_id["openmoji-1F41D"].title == "honeybee"
    assert by_id["openmoji-1F495"].symbol and "love heart symbol" in by_id["openmoji-1F495"].description


def test_skin_tone_variants_and_unnamed_extras_are_left_out(library):
    ids = {item.id for item in library.items}
    assert "openmoji-1F44D" in ids  # thumbs up
    assert not any("1F3FB" in i or "1F3FF" in i for i in ids)
    assert not any(i.startswith("openmoji-E0") for i in ids)


def test_a_damaged_index_is_reported_with_how_to_rebuild_it(tmp_path):
    (tmp_path / "index.json").write_text("{not json")
    np.save(tmp_path / "vectors.npy", np.zeros((1, 384), np.float32))
    with pytest.raises(illustrations.StageError, match="delete that folder to rebuild it"):
        illustrations.open_library(tmp_path)


# ---------------------------------------------------------------- matching


def test_sentences_get_the_illustrations_they_name(library):
    scenes = choose_scenes(library, [
        "Octopuses have three hearts.",
        "Your heart pumps blood through every artery of the human body.",
        "A honeybee carries pollen from one flower to the next.",
        "Sunlight warms the surface of the Earth.",
    ], embed_texts)

    assert titles(library, scenes[0])[0] == "octopus"
    assert titles(library, scenes[1])[0] == "anatomical heart"
    assert titles(library, scenes[2])[0] == "honeybee"
    assert "sun" in titles(library, scenes[3])[0]
    assert [s.text for s in scenes][0] == "Octopuses have three hearts."


def test_a_sentence_with_two_strong_matches_shows_both_and_no_love_heart_sign(library):
    scene = choose_scenes(library, ["Octopuses have three hearts."], embed_texts)[0]

    assert titles(library, scene) == ["octopus", "anatomical heart"]
    assert scene.picks[0].score > scene.picks[1].score >= 0.45
    assert not any(library.items[p.item].symbol for p in scene.picks)


def test_the_background_palette_follows_the_topic():
    assert choose_palette(["Octopuses", "They live on the floor of the deep ocean."], embed_texts).name == "deep sea"
    assert choose_palette(["How bees make honey", "Bees visit flowers."], embed_texts).name == "meadow"
    assert choose_palette(["Why is the sky blue?", "Sunlight is scattered by air."], embed_texts).name == "daytime sky"


# ---------------------------------------------------------------- composition


def test_a_scene_is_a_vertical_png_with_the_illustrations_large_above_a_calm_caption_band(tmp_path, library):
    scene = choose_scenes(library, ["Octopuses have three hearts."], embed_texts)[0]
    palette = next(p for p in PALETTES if p.name == "deep sea")
    path = compose(scene, library, palette, tmp_path / "scene.png", seed=1)

    facts = probe_media(path)
    assert (facts.media, facts.width, facts.height) == ("still", *SCENE_SIZE)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)  # both drawings are red
    height = SCENE_SIZE[1]
    upper, captions = red[: int(height * 0.56)], red[int(height * 0.56): int(height * 0.84)]
    rows, columns = np.nonzero(upper)
    width = SCENE_SIZE[0]
    assert columns.max() - columns.min() > 0.6 * width  # large: together they span most of the width...
    assert rows.max() - rows.min() > 0.35 * height  # ...and most of the upper part's height
    assert columns.min() > 0.06 * width and columns.max() < 0.94 * width  # and stay clear of what zooming crops
    assert captions.mean() == 0.0
    brightness = pixels.mean(axis=(1, 2))
    band_middle = int(height * 0.70)
    assert brightness[band_middle] < brightness[int(height * 0.52)]
    assert describe(scene, library, palette) == (
        "An illustration of an octopus and an anatomical heart, on a deep sea background."
    )


def test_scenes_are_reproducible_for_the_same_seed(tmp_path, library):
    scene = choose_scenes(library, ["A honeybee visits a flower."], embed_texts)[0]
    palette = PALETTES[3]
    one = compose(scene, library, palette, tmp_path / "one.png", seed=4)
    two = compose(scene, library, palette, tmp_path / "two.png", seed=4)
    assert one.read_bytes() == two.read_bytes()


# ---------------------------------------------------------------- optional sources


def test_without_the_debian_packages_only_openmoji_is_indexed_and_the_rest_is_named(tmp_path):
    assert [s.name for s in installed_sources(tmp_path / "oc", tmp_path / "tp")] == ["openmoji"]
    assert missing_optional_sources(tmp_path / "oc", tmp_path / "tp") == ["openclipart", "tuxpaint"]
    assert "apt-get install openclipart-svg" in illustrations.OPTIONAL_INSTALL


def test_installed_openclipart_and_tuxpaint_are_read_with_their_titles_keywords_and_licences(tmp_path):
    oc, tp = tmp_path / "openclipart", tmp_path / "tuxpaint" / "stamps"
    clipart(oc / "svg" / "toys", "balloon", "red balloon", "A red party balloon on a string", ["balloon", "party"])
    huge = clipart(oc / "svg" / "misc", "huge", "huge", "too big", ["big"])
    huge.write_text(huge.read_text() + "<!--" + "x" * illustrations.MAX_SVG_BYTES + "-->")
    stamp(tp / "animals" / "frogs", "tree_frog", "A green tree frog.")
    stamp(tp / "animals" / "frogs", "unnamed", None)
    stamp(tp / "symbols" / "shapes", "heart", "A heart.")

    sources = installed_sources(oc, tp)
    assert [s.name for s in sources] == ["openmoji", "openclipart", "tuxpaint"]
    assert missing_optional_sources(oc, tp) == []
    (clip,) = sources[1].read()
    assert clip.title == "red balloon"  # the byline is gone, and the creator's name is not the title
    assert clip.keywords == ["balloon", "party"] and "public domain" in clip.licence
    assert "A red party balloon" in clip.description
    frog, heart = sources[2].read()
    assert frog.title == "tree frog" and frog.description.startswith("A green tree frog.")
    assert frog.keywords == ["animals", "frogs"] and "GPL" in frog.licence and not frog.symbol
    assert heart.symbol  # stamps under symbols/ are signs, ranked below pictures


def test_an_index_of_clip_art_finds_and_draws_it(tmp_path, cache_dir):
    oc, tp = tmp_path / "openclipart", tmp_path / "tuxpaint"
    clipart(oc / "svg" / "toys", "balloon", "red balloon", "A red party balloon on a string", ["balloon", "party"])
    clipart(oc / "svg" / "tools", "hammer", "claw hammer", "A hammer for nails", ["tool", "hammer"])
    stamp(tp / "animals", "frog", "A green tree frog.")
    library = load_library([openclipart_source(oc), tuxpaint_source(tp)])
    assert [s.name for s in library.index.sources] == ["openclipart", "tuxpaint"]

    scenes = choose_scenes(library, ["She let go of the balloon at the party.", "A frog sat on a leaf."], embed_texts)
    assert titles(library, scenes[0])[0] == "red balloon"
    assert titles(library, scenes[1])[0] == "frog"
    for number, scene in enumerate(scenes):
        path = compose(scene, library, PALETTES[-1], tmp_path / f"s{number}.png", seed=number)
        assert Image.open(path).size == SCENE_SIZE


def test_clip_art_sized_in_points_without_a_viewbox_is_drawn_at_its_shape(tmp_path):
    """Old Inkscape files say width="300pt" and have no viewBox; resvg needs a DPI to read that."""
    path = clipart(tmp_path, "old", "old kite", "A kite", ["kite"])
    path.write_text(path.read_text().replace('width="200" height="300" viewBox="0 0 200 300"',
                                             'width="200pt" height="300pt"'))
    (item,) = read_openclipart([path], tmp_path)
    assert drawable(item.path)
    art = rasterise(item, 600)
    assert art.height == 600 and abs(art.width - 400) <= 1  # 200pt x 300pt, its shape kept
    assert np.asarray(art)[..., 3].max() == 255


def test_a_file_that_cannot_be_drawn_is_never_picked(tmp_path, cache_dir):
    good = clipart(tmp_path / "svg", "kite", "red kite", "A red kite flying", ["kite"])
    bad = clipart(tmp_path / "svg", "kite2", "kite on a string", "A kite flying on a string", ["kite"])
    bad.write_text(bad.read_text().replace('width="200" height="300" viewBox="0 0 200 300"', 'width="0" height="0"'))
    library = load_library([openclipart_source(tmp_path)])
    assert not drawable(str(bad)) and drawable(str(good))

    (scene,) = choose_scenes(library, ["A kite flying on a string."], embed_texts)
    assert titles(library, scene) == ["red kite"]


def test_unreadable_clip_art_is_skipped(tmp_path):
    good = clipart(tmp_path / "svg", "ok", "kite", "A kite", ["kite"])
    broken = tmp_path / "svg" / "broken.svg"
    broken.write_text("<svg><metadata>")
    untitled = tmp_path / "svg" / "untitled.svg"
    untitled.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    assert [i.title for i in read_openclipart([good, broken, untitled], tmp_path)] == ["kite"]


# ---------------------------------------------------------------- credits


def test_credits_list_every_illustration_with_its_licence_and_what_may_be_published(library):
    by_id = {item.id: item for item in library.items}
    text = credits_text([
        ("scene-01", [by_id["openmoji-1F419"], by_id["openmoji-1FAC0"]]),
        ("scene-02", [by_id["openmoji-1F41D"]]),
    ])
    lines = text.splitlines()
    assert "scene-01: octopus | openmoji 1F419.svg | CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)" in lines
    assert any(line.startswith("scene-01: anatomical heart | openmoji 1FAC0.svg") for line in lines)
    assert any(line.startswith("scene-02: honeybee") for line in lines)
    assert "CC BY-SA 4.0" in text and "credit OpenMoji" in text
    assert any(line.startswith("- openmoji: All emojis designed by OpenMoji") for line in lines)


def test_the_index_command_builds_the_index_into_the_cache_once(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "AISHORTS_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "aishorts.stages.broll.illustrations", "index"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "embedding" in first.stdout and "illustrations indexed in" in first.stdout
    assert list((tmp_path / "cache" / "illustrations").glob("*/index.json"))
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "embedding" not in again.stdout  # read from the cache, not rebuilt

"""The broll stage's built-in source: a scene drawn for each sentence from the illustrated library, with credits.

Run through the real stage harness with the real index (built once into the
stages' cache), encoder, rasteriser and ffmpeg probe. Also: photographs and
clips from the user's folder come first, and illustrated scenes only fill the
sentences they leave without a fitting visual.
"""

from __future__ import annotations

import subprocess

from aishorts.ipc.artifacts import Script
from aishorts.ipc.files import resolve_in_run
from aishorts.ipc.params import BrollParams
from aishorts.ipc.sizes import MiB
from aishorts.stages.broll.illustrations_scenes import SCENE_SIZE
from aishorts.stages.broll.stage import CREDITS_FILE
from aishorts.stages.common.media import ffmpeg_exe

OCTOPUS = Script(
    title="Why octopuses have three hearts",
    hook="Octopuses have three hearts.",
    body=[
        "A honeybee carries pollen from one flower to the next.",
        "Sunlight warms the surface of the Earth.",
    ],
    cta="Follow for more ocean facts.",
    broll_queries=["octopus hearts", "blue blood"],
)


def test_builtin_draws_one_described_scene_per_sentence_with_its_credits(tmp_path, run_stage_inline):
    result, events = run_stage_inline(tmp_path, "broll", BrollParams(source="builtin"), script=OCTOPUS)

    assert result.source == "builtin" and result.skipped == []
    assert [item.id for item in result.items] == ["scene-01", "scene-02", "scene-03", "scene-04"]
    for item, sentence in zip(result.items, OCTOPUS.sentences):
        path = resolve_in_run(tmp_path, item.path)
        assert path.read_bytes().startswith(b"\x89PNG")
        assert (item.media, item.width, item.height, item.source) == ("still", *SCENE_SIZE, "builtin")
        assert item.description.startswith("An illustration of ") and item.tags
        assert item.origin.startswith(f"illustrated for: {sentence}")
    assert result.items[0].title == "octopus and anatomical heart"
    assert "honeybee" in result.items[1].title

    credits = (tmp_path / "broll" / CREDITS_FILE).read_text()
    assert "scene-01: octopus | openmoji 1F419.svg | CC BY-SA 4.0" in credits
    first = next(c for c in result.items if c.id == "scene-01")
    assert ("octopus", "openmoji", "1F419.svg") in {(c.title, c.source, c.file) for c in first.credits}
    assert all(c.licence.startswith("CC BY-SA 4.0") and c.attribution for c in first.credits)  # carried on to the render's credits.txt
    assert "scene-01: anatomical heart" in credits and "scene-02: honeybee" in credits
    assert any(e.kind == "phase" and e.message == "illustrate" for e in events)


def test_builtin_draws_no_more_scenes_than_max_items(tmp_path, run_stage_inline):
    result, _ = run_stage_inline(tmp_path, "broll", BrollParams(source="builtin", max_items=2), script=OCTOPUS)

    assert [item.id for item in result.items] == ["scene-01", "scene-02"]
    assert "scene-03" not in (tmp_path / "broll" / CREDITS_FILE).read_text()


def test_the_users_own_visuals_come_first_and_scenes_fill_the_sentences_they_do_not_fit(tmp_path, run_stage_inline):
    mine = tmp_path / "mine"
    mine.mkdir()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=blue:size=320x240",
                    "-frames:v", "1", str(mine / "octopus on the sea floor.png")], check=True, timeout=60)
    params = BrollParams(source="local", local_dir=str(mine))
    result, _ = run_stage_inline(tmp_path / "run", "broll", params, script=OCTOPUS)

    assert result.source == "local"
    assert result.items[0].id.startswith("local-octopus") and result.items[0].source == "local"
    filled = result.items[1:]
    assert len(filled) == 3 and all(item.source == "builtin" for item in filled)
    # the octopus sentence has the user's octopus picture: the scenes are for the other three
    assert [item.origin.split(" (")[0] for item in filled] == [
        f"illustrated for: {sentence}" for sentence in OCTOPUS.sentences[1:]
    ]
    assert "3 illustrated scenes fill the sentences its visuals fit least" in result.source_reason
    assert (tmp_path / "run" / "broll" / CREDITS_FILE).is_file()


def test_enough_of_the_users_own_visuals_need_no_scenes(tmp_path, run_stage_inline):
    mine = tmp_path / "mine"
    mine.mkdir()
    for number in range(4):
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=red:size=320x240",
                        "-frames:v", "1", str(mine / f"picture {number}.png")], check=True, timeout=60)
    params = BrollParams(source="local", local_dir=str(mine))
    result, _ = run_stage_inline(tmp_path / "run", "broll", params, script=OCTOPUS)

    assert [item.source for item in result.items] == ["local"] * 4
    assert not (tmp_path / "run" / "broll" / CREDITS_FILE).exists()


def test_scenes_and_credits_replace_links_planted_at_their_names(tmp_path, run_stage_inline):
    from test_stage_fresh_outputs import Planted

    planted = Planted(tmp_path / "run", tmp_path / "outside")
    planted.link("broll/scene-01.png")
    planted.link(f"broll/{CREDITS_FILE}", dangling=True)
    before = planted.outside_state()

    result, _ = run_stage_inline(tmp_path / "run", "broll", BrollParams(source="builtin", max_items=1), script=OCTOPUS)

    planted.check_untouched(before)
    assert (tmp_path / "run" / "broll" / "scene-01.png").read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "run" / "broll" / CREDITS_FILE).is_symlink()
    assert "scene-01: octopus" in (tmp_path / "run" / "broll" / CREDITS_FILE).read_text()


def test_the_builtin_library_stays_within_the_broll_stages_ceiling(tmp_path):
    """Run as its own process, as the supervisor starts it: its tree's peak, read from the kernel."""
    from test_stage_broll_limits import run_broll_process

    from aishorts.runner.limits import load_limits

    result, peak = run_broll_process(tmp_path / "run", BrollParams(source="builtin"))

    assert result.source == "builtin" and len(result.items) == 4
    print(f"broll builtin peak: {peak / MiB:.0f} MiB")
    ceiling = load_limits().for_stage("broll").ceiling
    assert peak < ceiling, f"the builtin library peaked at {peak / MiB:.0f} MiB, over the {ceiling / MiB:.0f} MiB ceiling"

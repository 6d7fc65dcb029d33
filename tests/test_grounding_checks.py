"""Each sentence of a grounded script is checked by meaning too: its nearest passage by MiniLM, when affordable.

The shipped all-MiniLM-L6-v2 (int8 ONNX) gives the similarities; the script
stage runs with the loopback chat server writing its answer (tests/llm_server.py).
"""

from __future__ import annotations

import json

import psutil
import pytest
from llm_server import ChatServer, chat
from script_helpers import THEME, llm
from source_files import OCTOPUS

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.params import ScriptParams
from aishorts.stages.common.text_embedding import embed_texts
from aishorts.stages.grounding.checks import MIN_SIMILARITY, source_numbers, support
from aishorts.stages.grounding.passages import split_passages

pytestmark = pytest.mark.usefixtures("own_cache")

BODY = [
    "Two branchial hearts pump blood through the gills.",
    "A systemic heart pumps that blood through the body.",
    "The systemic heart stops beating when the octopus swims.",
    "That is why octopuses tire quickly and prefer to crawl.",
    "This is a fact.",
    "Octopus blood is blue because of hemocyanin.",
    "Two branchial hearts pump the blood through the gills.",
    "Hemocyanin is a protein that contains copper and carries oxygen.",
    "It carries oxygen well in cold water with little oxygen.",
    "Each of the eight arms is lined with suckers that taste what they touch.",
    "About two thirds of its neurons lie in its arms.",
]
BEES = "Honey bees make honey from the nectar of flowers."


def answer() -> str:
    return json.dumps({"hook": "An octopus has three hearts that share the work.", "body": BODY,
                       "cta": "Follow for more strange facts about the ocean.", "queries": ["octopus"]})


@pytest.fixture
def source_file(tmp_path):
    path = tmp_path / "octopus.txt"
    path.write_text("Octopus\n\n" + OCTOPUS["Octopus"] + "\n\n" + OCTOPUS["Honey bee"] + "\n")
    return path


def similarities(sentence: str, passages) -> list[float]:
    return (embed_texts([sentence]) @ embed_texts([p.text for p in passages]).T)[0].tolist()


def test_a_sentence_rests_on_a_passage_near_it_in_meaning_and_one_far_from_all_is_unsupported():
    passages = split_passages([OCTOPUS["Octopus"], OCTOPUS["Honey bee"]])
    known = source_numbers([p.text for p in passages])
    near = support(BODY[0], passages, known, similarities(BODY[0], passages))
    assert near.supported and passages[near.passage].source == 0 and near.similarity > MIN_SIMILARITY
    bees = support(BEES, passages, known, similarities(BEES, passages))
    assert bees.supported and passages[bees.passage].source == 1
    # every content word in the bee passage, and nothing it says: words pass it, meaning does not
    for empty in ("It makes most of its life.", "They carry it back in their life."):
        assert support(empty, passages, known).supported
        by_meaning = support(empty, passages, known, similarities(empty, passages))
        assert not by_meaning.supported and by_meaning.share == 1.0 and by_meaning.similarity < MIN_SIMILARITY


def test_a_sentence_with_no_content_word_is_not_supported():
    passages = split_passages([OCTOPUS["Octopus"]])
    found = support("This is a fact.", passages, set(), similarities("This is a fact.", passages))
    assert not found.supported and found.similarity is None and found.passage == -1
    assert not support("This is a fact.", passages, set()).supported


def test_the_script_stage_checks_by_meaning_drops_repeats_and_filler_and_records_each_similarity(
    run_stage_inline, tmp_path, source_file,
):
    with ChatServer([chat(answer()), chat(json.dumps({"sentences": []}))]) as server:
        params = ScriptParams(sources=[str(source_file)], wiki_url="off", llm=llm(server))
        script, events = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    assert "This is a fact." not in script.body
    assert "Two branchial hearts pump the blood through the gills." not in script.body  # says BODY[0] again
    assert BODY[0] in script.body
    assert any("1 repeated sentence(s) dropped" in f for f in script.fallbacks)
    checked = [s for s in script.support if s.how != "unchecked"]
    assert checked and all(s.similarity is not None and s.similarity >= MIN_SIMILARITY for s in checked)
    assert not any(e.message.startswith("checked by words and numbers only") for e in events)


def test_under_a_ceiling_with_no_room_for_minilm_words_and_numbers_alone_check(tmp_path, source_file):
    from conftest import stage_call

    from aishorts.ipc.artifacts import Theme as ThemeArtifact  # noqa: F401 (the theme input is written below)
    from aishorts.ipc.files import write_struct
    from aishorts.ipc.pipeline import artifact_path
    from aishorts.stages.harness import execute

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_struct(run_dir / artifact_path("theme"), THEME)
    events = []
    with ChatServer([chat(answer()), chat(json.dumps({"sentences": []}))]) as server:
        params = ScriptParams(sources=[str(source_file)], wiki_url="off", llm=llm(server))
        tight = psutil.Process().memory_info().rss + 64 * 1024 * 1024  # room for the stage, not for MiniLM
        script = execute(stage_call(run_dir, "script", params, ceiling_bytes=tight), events.append)
    assert script.grounding == "grounded in 1 source"
    assert all(s.similarity is None for s in script.support)
    assert any(e.message.startswith("checked by words and numbers only: MiniLM needs about 200M more")
               for e in events if e.kind == "log")


def test_a_portuguese_script_is_checked_by_words_and_numbers_and_says_why(run_stage_inline, tmp_path):
    source = tmp_path / "polvo.txt"
    source.write_text((__import__("pathlib").Path(__file__).resolve().parent.parent
                       / "tools" / "bench_sources" / "polvo.txt").read_text())
    body = [s for p in split_passages([source.read_text()]) for s in p.sentences][:9]
    reply = json.dumps({"hook": "O polvo tem três corações.", "body": body,
                        "cta": "Siga para mais curiosidades do oceano.", "queries": ["polvo"]})
    theme = Theme(topic="Por que o polvo tem três corações", angle="", keywords=["polvo", "corações"])
    with ChatServer([chat(reply)]) as server:
        params = ScriptParams(language="pt-br", sources=[str(source)], wiki_url="off", llm=llm(server))
        script, events = run_stage_inline(tmp_path / "run", "script", params, theme=theme)
    assert script.grounding == "grounded in 1 source"
    assert all(s.similarity is None for s in script.support)
    assert any("MiniLM is an English model" in e.message for e in events if e.kind == "log")


BENCH_SOURCES = __import__("pathlib").Path(__file__).resolve().parent.parent / "tools" / "bench_sources"
ONE_NEW_WORD = [
    # All but one or two content words from the source: the share passed them (0.60-0.75); the new words are claims.
    ("octopus", "An octopus is a fish with three hearts.", ["fish"]),
    ("octopus", "The octopus has a heart of gold.", ["gold"]),
    # Qwen2.5-Coder-1.5B's, retelling the bench sources:
    ("octopus", "Octopuses have eight arms lined with suckers, giving them an extra sense of touch and awareness.",
     ["aware", "givin", "sense"]),
    ("sky", "Blue light is scattered about five times more than red light, giving the sky its characteristic blue hue.",
     ["chara", "givin", "hue"]),
]
RETOLD = [
    # Qwen's faithful retellings: one new word in nine or more is a paraphrase, not a claim.
    ("octopus", "Each heart pumps blood through the body, helping octopuses extract oxygen from the water."),
    ("octopus", "They carry oxygen with hemocyanin, a protein that contains copper, while human blood uses"
     " hemoglobin, which contains iron."),
    ("sky", "These molecules scatter short wavelengths far more strongly than long ones, a phenomenon called"
     " Rayleigh scattering."),
    ("sky", "The light that is left looks orange and red, as the blue light is scattered."),
    # American spelling of the source's British "colours": the same word
    ("sky", "Sunlight is a mix of all the colors of the rainbow."),
]


def bench_source(name: str):
    text = (BENCH_SOURCES / f"{name}.txt").read_text()
    return split_passages([text]), source_numbers([text])


@pytest.mark.parametrize(("name", "sentence", "new"), ONE_NEW_WORD)
def test_a_short_claim_resting_on_a_word_no_passage_uses_is_not_supported(name, sentence, new):
    from aishorts.stages.grounding.checks import SUPPORT_SHARE

    passages, known = bench_source(name)
    found = support(sentence, passages, known)
    assert found.share >= SUPPORT_SHARE  # by the share of its words alone it would pass
    assert not found.supported and list(found.novel_words) == new


@pytest.mark.parametrize(("name", "sentence"), RETOLD)
def test_a_faithful_retelling_with_one_new_word_in_many_is_still_supported(name, sentence):
    passages, known = bench_source(name)
    found = support(sentence, passages, known)
    assert found.supported and len(found.novel_words) <= 1

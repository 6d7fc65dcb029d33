"""`--category` with sources: the theme stage picks a topic the short's sources can support.

The model proposing topics is the loopback chat server (tests/llm_server.py),
the wiki the loopback MediaWiki (tests/wiki_server.py), the sources real files
and a real ZIM archive made here.
"""

from __future__ import annotations

import pytest
from llm_server import ChatServer, chat
from script_helpers import llm
from source_files import OCTOPUS, make_zim
from wiki_server import WikiServer

from aishorts.ipc.params import ThemeParams
from aishorts.stages.theme.topic_support import TopicSupport

pytestmark = pytest.mark.usefixtures("own_cache")

UNSUPPORTED = "How volcanoes build new islands"
SUPPORTED = "Why octopus blood is blue"
WRONG_NUMBER = "Why octopuses have five hearts"
ANGLE = "Two hearts serve the gills while the third serves the body."


@pytest.fixture
def octopus_notes(tmp_path):
    path = tmp_path / "octopus.md"
    path.write_text("# Octopus\n\n" + OCTOPUS["Octopus"] + "\n")
    return str(path)


def test_a_proposed_topic_the_source_does_not_cover_is_replaced_by_one_it_does(run_stage_inline, tmp_path,
                                                                               octopus_notes):
    replies = [chat(UNSUPPORTED), chat(WRONG_NUMBER), chat(SUPPORTED), chat(ANGLE)]
    with ChatServer(replies) as server:
        params = ThemeParams(category="animals", sources=[octopus_notes], wiki_url="off", llm=llm(server))
        theme, events = run_stage_inline(tmp_path / "run", "theme", params)
    assert theme.topic == SUPPORTED and theme.angle == ANGLE
    assert len(server.requests) == 4
    assert all("animals" in r.text() for r in server.requests[:3]) and SUPPORTED in server.requests[3].text()
    logs = [e.message for e in events if e.kind == "log"]
    assert any(UNSUPPORTED in m and "not supported by your sources" in m for m in logs)
    assert any(WRONG_NUMBER in m and "five not in it" in m for m in logs)  # its words are there, its number is not
    notes = [e.message for e in events if e.kind == "note"]
    assert notes == [f"topic chosen for what your sources support: {SUPPORTED!r} (after 2 they did not)"]


def test_a_first_topic_the_source_supports_is_kept_with_no_more_questions(run_stage_inline, tmp_path, octopus_notes):
    with ChatServer([chat(SUPPORTED), chat(ANGLE)]) as server:
        params = ThemeParams(category="animals", sources=[octopus_notes], wiki_url="off", llm=llm(server))
        theme, _ = run_stage_inline(tmp_path / "run", "theme", params)
    assert theme.topic == SUPPORTED and len(server.requests) == 2


def test_when_no_proposal_is_supported_the_short_is_about_what_the_sources_are_about(run_stage_inline, tmp_path,
                                                                                     octopus_notes):
    replies = [chat(UNSUPPORTED), chat("The tallest waterfalls on Earth"), chat("How deserts make their dunes"),
               chat(ANGLE)]
    with ChatServer(replies) as server:
        params = ThemeParams(category="animals", sources=[octopus_notes], wiki_url="off", llm=llm(server))
        theme, events = run_stage_inline(tmp_path / "run", "theme", params)
    assert theme.topic == "Octopus"
    assert len(server.requests) == 3 + 1  # three proposals, then the angle for the sources' own subject
    assert any("none of 3 proposed topics" in e.message and "'Octopus'" in e.message
               for e in events if e.kind == "note")


def test_a_zim_archive_is_searched_for_each_proposed_topic(run_stage_inline, tmp_path):
    zim = str(make_zim(tmp_path / "wikipedia_test.zim", OCTOPUS))
    replies = [chat(UNSUPPORTED), chat("How honey bees make honey"), chat(ANGLE)]
    with ChatServer(replies) as server:
        params = ThemeParams(category="animals", sources=[zim], wiki_url="off", llm=llm(server))
        theme, _ = run_stage_inline(tmp_path / "run", "theme", params)
    assert theme.topic == "How honey bees make honey"


def test_with_no_source_the_wiki_decides_which_topic_it_can_support(run_stage_inline, tmp_path):
    with WikiServer(OCTOPUS) as wiki, ChatServer([chat(UNSUPPORTED), chat(SUPPORTED), chat(ANGLE)]) as server:
        params = ThemeParams(category="animals", wiki_url=wiki.url, llm=llm(server))
        theme, _ = run_stage_inline(tmp_path / "run", "theme", params)
    assert theme.topic == SUPPORTED
    searched = [q["srsearch"] for q, _ in wiki.requests if q.get("list") == "search"]
    assert searched == [UNSUPPORTED, SUPPORTED]


def test_a_wiki_that_does_not_answer_checks_nothing_and_costs_no_more_questions(run_stage_inline, tmp_path):
    from llm_server import closed_port_url

    with ChatServer([chat(UNSUPPORTED), chat(ANGLE)]) as server:
        params = ThemeParams(category="animals", wiki_url=closed_port_url().removesuffix("/v1"), llm=llm(server))
        theme, _ = run_stage_inline(tmp_path / "run", "theme", params)
    assert theme.topic == UNSUPPORTED and len(server.requests) == 2


def test_a_given_topic_is_never_second_guessed(run_stage_inline, tmp_path, octopus_notes):
    theme, _ = run_stage_inline(tmp_path / "run", "theme",
                                ThemeParams(topic=UNSUPPORTED, category="animals", sources=[octopus_notes]))
    assert theme.topic == UNSUPPORTED


def test_the_category_and_its_sources_reach_the_theme_stage_from_the_command_line(tmp_path, octopus_notes):
    from aishorts.ipc.request import ShortRequest
    from aishorts.runner.options import build_params

    params = build_params(ShortRequest(category="animals", source=[octopus_notes], wiki_url="off",
                                       language="pt-br"), None)
    assert params.theme.sources == params.script.sources == [octopus_notes]
    assert params.theme.wiki_url == "off" and params.theme.language == "pt-br"


def test_a_missing_source_file_is_named():
    from aishorts.stages.common.context import StageError

    with pytest.raises(StageError, match="gone.md: no such file"):
        TopicSupport(["/nowhere/gone.md"], "off", "en-us").check(SUPPORTED)

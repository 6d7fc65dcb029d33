"""`aishorts-runner serve` shows what a short's script retells: the API's task and the page's card.

A real server runs the real theme and script stages (a developer pipeline of
the two, so no video is made) with the script written by the loopback chat
server (tests/llm_server.py) from the loopback MediaWiki's article
(tests/wiki_server.py), or with no source at all. The task then says
"grounded in 1 source" with the article's title, URL and licence, or "not
grounded: facts unchecked"; the page draws the same on the card.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from llm_server import ChatServer, chat
from source_files import OCTOPUS
from test_script_grounded import TRUE_BODY
from wiki_server import WikiServer

from tests.serve_helpers import finished, running_server, submit

TOPIC = "Why octopuses have three hearts"
BODY = TRUE_BODY[:9]  # what the loopback wiki's octopus article says
GROUNDED_ANSWER = json.dumps({"hook": "An octopus has three hearts that share the work.", "body": BODY,
                              "cta": "Follow for more strange facts about the ocean.",
                              "queries": ["octopus crawling", "blue blood", "octopus arms"]})


def theme_and_script(path: Path, script_params: str) -> Path:
    """A pipeline of the product's theme and script stages, the script stage given `script_params` (TOML)."""
    path.write_text(f"""
[[stage]]
name = "theme"
module = "aishorts.stages.theme.stage"
output = "theme"
inputs = []
ceiling = "300M"
params = {{ topic = "{TOPIC}" }}

[[stage]]
name = "script"
module = "aishorts.stages.script.stage"
output = "script"
inputs = ["theme"]
ceiling = "600M"
params = {script_params}
""")
    return path


def written_from(path: Path, chat_url: str, wiki_url: str) -> Path:
    """The theme and script pipeline, the script written by `chat_url` from `wiki_url`."""
    llm = (f'{{ backend = "openai", base_url = "{chat_url}", model = "test-model",'
           f' api_key_env = "AISHORTS_NO_SUCH_KEY", timeout_s = 10.0 }}')
    return theme_and_script(path, f'{{ wiki_url = "{wiki_url}", llm = {llm} }}')


async def mcp_file(url: str, task_id: str, name: str) -> dict:
    """What an agent gets for one file through the MCP endpoint: its text, or its bytes in base64."""
    from mcp.client.client import Client
    from test_serve_mcp import answer

    async with Client(f"{url}/mcp") as client:
        got = answer(await client.call_tool("get_file", {"task_id": task_id, "name": name}))
    return {key: got[key] for key in ("text", "base64") if key in got}


@pytest.fixture
def servers(tmp_path):
    """(wiki, chat for the grounded script, chat for the unchecked one, the server's pipeline options)."""
    from test_stage_theme_script import GOOD_SCRIPT

    with WikiServer(OCTOPUS) as wiki, ChatServer([chat(GROUNDED_ANSWER)]) as grounded, \
            ChatServer([chat(GOOD_SCRIPT)]) as unchecked:
        options = ["--pipeline", written_from(tmp_path / "wiki.toml", grounded.url, wiki.url),
                   "--pipeline", written_from(tmp_path / "nowiki.toml", unchecked.url, "off")]
        yield wiki, grounded, unchecked, options


def test_a_finished_task_names_its_sources_and_says_whether_its_script_is_grounded(tmp_path, servers):
    wiki, _, _, options = servers
    with running_server(tmp_path / "runs", *options) as server, server.client() as client:
        grounded = finished(client, submit(client, topic=TOPIC, pipeline="wiki"), timeout=300)
        unchecked = finished(client, submit(client, topic=TOPIC, pipeline="nowiki"), timeout=300)

        assert grounded["status"] == "done", grounded
        assert grounded["grounding"] == "grounded in 1 source"
        [source] = grounded["sources"]
        article = f"{wiki.url}/wiki/Octopus"
        assert (source["title"], source["origin"], source["url"]) == ("Octopus", article, article)
        assert source["licence"].startswith("Creative Commons Attribution-Share Alike 4.0")
        assert source["licence_url"] == "https://creativecommons.org/licenses/by-sa/4.0/"
        assert source["credit"] == 'text from "Octopus" on Testpedia, by its contributors'
        cited = client.get(grounded["files"]["sources.txt"])
        assert cited.status_code == 200 and cited.headers["content-type"].startswith("text/plain")
        assert cited.text.startswith("grounded in 1 source.") and article in cited.text
        assert asyncio.run(mcp_file(server.url, grounded["task_id"], "sources.txt")) == {"text": cited.text}
        listed = client.get("/api/v1/tasks").json()["data"]["tasks"]
        assert next(t for t in listed if t["task_id"] == grounded["task_id"])["sources"] == grounded["sources"]

        assert unchecked["status"] == "done", unchecked
        assert unchecked["grounding"].startswith("not grounded: facts unchecked")
        assert unchecked["sources"] == []
        assert "not checked" in client.get(unchecked["files"]["sources.txt"]).text


def test_a_users_own_narration_claims_no_grounding(tmp_path):
    script = "Octopuses have three hearts and blue blood. Two hearts serve the gills. Follow for more."
    pipeline = theme_and_script(tmp_path / "mine.toml", f'{{ script_text = "{script}" }}')
    with running_server(tmp_path / "runs", "--pipeline", pipeline) as server, server.client() as client:
        done = finished(client, submit(client, topic=TOPIC, pipeline="mine"), timeout=300)
    assert done["status"] == "done" and done["script"] == script
    assert done["grounding"] is None and done["sources"] == []


@pytest.mark.slow
def test_the_page_shows_the_sources_on_the_finished_card_and_the_grounded_line(tmp_path, servers):
    from playwright.sync_api import expect, sync_playwright
    from test_serve_browser import chromium, shoot, submitted

    wiki, _, _, options = servers
    with running_server(tmp_path / "runs", *options) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")
        page.fill("#topic", TOPIC)
        page.locator("details").evaluate("details => details.open = true")

        page.select_option("#pipeline", "wiki")
        card = submitted(page, server)
        expect(card).to_have_attribute("data-status", "done", timeout=300_000)
        box = card.locator(".sources-box")
        expect(box.locator(".grounding")).to_have_text("grounded in 1 source")
        expect(box.locator(".grounding")).to_have_class(re.compile(r"\bgrounded\b"))
        expect(box.locator(".sources-title")).to_be_visible()
        title = box.locator("li.source a.source-title")
        expect(title).to_have_text("Octopus")
        assert title.get_attribute("href") == f"{wiki.url}/wiki/Octopus"
        licence = box.locator("li.source a.licence")
        expect(licence).to_contain_text("Creative Commons Attribution-Share Alike 4.0")
        assert licence.get_attribute("href") == "https://creativecommons.org/licenses/by-sa/4.0/"
        expect(box.locator("li.source .credit")).to_have_text('Credit: text from "Octopus" on Testpedia, by its'
                                                               ' contributors')
        expect(box.locator("li.sources-file a")).to_have_text("sources.txt")

        page.select_option("#pipeline", "nowiki")
        other = submitted(page, server)
        expect(other).to_have_attribute("data-status", "done", timeout=300_000)
        line = other.locator(".sources-box .grounding")
        expect(line).to_contain_text("not grounded: facts unchecked")
        expect(line).to_have_class(re.compile(r"\bnot-grounded\b"))
        expect(other.locator(".sources-box .sources-title")).to_be_hidden()
        expect(other.locator(".sources-box li")).to_have_count(0)
        shoot(page, tmp_path, "sources")
        browser.close()
    assert not errors, errors

"""The page of `aishorts-runner serve` in a real browser: Debian's Chromium driven by Playwright.

A person's path through it: write a short script in the form, watch the
stage bars move while the real stages run, play the finished short in the
page, then see a job given a tiny memory limit stop with the plain sentence
and a one-click resume with more memory. No browser is downloaded: Chromium
comes from apt (tools/test.sh installs it), and without it this test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright  # the serve extra; never `playwright install`

from aishorts.runner.rundir import read_manifest
from tests.loopback import LoopbackServer, QuietHandler
from tests.runner_helpers import wait_for
from tests.serve_helpers import running_server
from tools.balloon import write_pipeline

pytestmark = pytest.mark.slow

SCRIPT = "Octopuses have three hearts and blue blood. Two hearts serve the gills, and the third serves the body."
SCREENSHOTS_ENV = "AISHORTS_SCREENSHOTS"
"""A folder to keep the page's screenshots in (running, done, oom); they always go to the test's tmp folder."""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is needed for the browser test: apt-get install -y chromium (tools/test.sh does it)"
    return path


@contextlib.contextmanager
def browser_page(server, height: int = 1000) -> Iterator:
    """The server's page open in Debian's Chromium; on leaving, the browser is closed and the test fails if a
    script of the page raised an error."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")
        yield page
        browser.close()
    assert not errors, errors


def stage_bars(card) -> list[tuple[str, str, int]]:
    return [(name, status, int(rss)) for name, status, rss in card.locator(".stage").evaluate_all(
        "items => items.map(e => [e.dataset.stage, e.dataset.status, e.dataset.rss])"
    )]


def submitted(page, server):
    """Click the form's button; the new task's card (the test fails with the page's and the server's words if none)."""
    before = page.locator("li.task").count()
    page.click("#submit")
    try:
        expect(page.locator("li.task")).to_have_count(before + 1, timeout=60_000)
    except AssertionError:
        import httpx

        tasks = httpx.get(f"{server.url}/api/v1/tasks").text
        raise AssertionError(f"no new task: form says {page.inner_text('#form-error')!r}; server has {tasks}") from None
    task_id = page.locator("li.task").first.get_attribute("data-task-id")
    return page.locator(f"li.task[data-task-id='{task_id}']")


def expect_or_say(server, card, attribute: str, value, timeout: float) -> None:
    """`expect(card).to_have_attribute(...)`, failing with what the server itself says of the task and its log's end
    (a card that stays behind the server and a run that never ended are different bugs)."""
    try:
        expect(card).to_have_attribute(attribute, value, timeout=timeout)
    except AssertionError as exc:
        task_id = card.get_attribute("data-task-id")
        with server.client() as client:
            said = client.get(f"/api/v1/tasks/{task_id}").text
        raise AssertionError(f"{exc}\nthe server says of {task_id}: {said}\n"
                             f"its log ends: {server.log.read_text(errors='replace')[-4000:]}") from None


def shoot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"serve-{name}.png"), full_page=True)
    if os.environ.get(SCREENSHOTS_ENV):
        keep = Path(os.environ[SCREENSHOTS_ENV])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / f"serve-{name}.png", keep / f"serve-{name}.png")


def test_a_person_makes_a_short_in_the_page_watches_it_and_resumes_an_oom(tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    warm = write_pipeline(tmp_path / "warm.toml",  # a stage that stays near its ceiling: about 90% of it
                          {"name": "near", "ceiling": "200M", "params": {"mb": 160, "rate_mb_s": 100, "hold_s": 3}})
    with running_server(tmp_path / "runs", "--max-ram", "4G", "--pipeline", warm) as server, \
            browser_page(server) as page:
        page.fill("#max_ram", "lots")
        page.click("#submit")
        expect(page.locator("#form-error")).to_contain_text("max_ram: --max-ram: cannot read size")
        expect(page.locator("#max_ram")).to_have_class("invalid")

        page.fill("#max_ram", "")
        page.fill("#topic", "Near the ceiling")
        page.locator("details").evaluate("details => details.open = true")
        page.select_option("#pipeline", "warm")
        near = submitted(page, server)
        expect(near.locator(".stage[data-stage=near]")).to_have_class(re.compile(r"\bwarn\b"), timeout=120_000)
        expect(near).to_have_attribute("data-status", "done", timeout=120_000)

        page.select_option("#pipeline", "")  # the product's stages from here on
        page.check("input[name=what][value=script]")
        page.fill("#script", SCRIPT)
        page.uncheck("#music")
        page.fill("#limits", "tts=40M")
        oom = submitted(page, server)
        expect(oom).to_have_attribute("data-status", "oom", timeout=600_000)
        expect(oom.locator(".message")).to_contain_text("stage tts crossed its memory ceiling")
        expect(oom.locator(".stage[data-stage=tts]")).to_have_class(re.compile(r"\boom\b"))
        expect(oom.locator("button.resume")).to_contain_text("Resume with more memory for tts")

        page.fill("#limits", "")
        card = submitted(page, server)
        expect(card).to_have_attribute("data-status", "running", timeout=60_000)
        seen: set[tuple[str, int]] = set()
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline and card.get_attribute("data-status") in ("queued", "running"):
            seen |= {(name, rss) for name, status, rss in stage_bars(card) if status == "running" and rss > 0}
            if len(seen) == 8:
                shoot(page, shots, "running")
            page.wait_for_timeout(250)
        assert card.get_attribute("data-status") == "done", card.inner_text()
        assert len({name for name, _ in seen}) >= 3, seen  # bars of several stages showed live RSS
        assert len(seen) >= 10, seen  # and moved while each ran

        video = card.locator("video")
        expect(video).to_have_count(1)
        duration = video.evaluate("""v => new Promise((resolve, reject) => {
            v.muted = true;
            v.addEventListener('error', () => reject(new Error('the video did not load')));
            const played = () => v.currentTime > 0 ? resolve(v.duration) : setTimeout(played, 100);
            v.play().then(played, reject);
        })""")
        assert duration > 0
        assert video.evaluate("v => v.textTracks.length") == 1  # the captions
        hrefs = card.locator(".result a").evaluate_all("links => links.map(a => a.textContent)")
        assert {"final.mp4", "captions.srt", "thumbnail.jpg", "memory.svg"} <= set(hrefs)
        task_id = card.get_attribute("data-task-id")
        with server.client() as client:  # what the page played, as any HTTP client gets it
            part = client.get(f"/api/v1/tasks/{task_id}/final.mp4", headers={"Range": "bytes=4-11"})
            assert part.status_code == 206 and part.headers["content-type"] == "video/mp4"
            assert part.content == b"ftypisom"  # bytes 4 to 11 of an MP4: its ftyp box
            assert client.get(f"/api/v1/tasks/{task_id}/captions.vtt").text.startswith("WEBVTT\n\n1\n00:00:00.")
        shoot(page, shots, "done")

        oom.locator("button.resume").click()
        expect(oom).to_have_attribute("data-status", re.compile("queued|running"), timeout=60_000)
        expect(oom.locator(".stage[data-stage=tts]")).not_to_have_class(re.compile(r"\boom\b"), timeout=60_000)
        oom.locator("button.cancel").click()  # the resumed job was taken up; no need to spend a render on it
        expect_or_say(server, oom, "data-status", "interrupted", timeout=120_000)


def test_voices_follow_the_language_a_preview_plays_a_finished_card_keeps_its_chart_and_delete_removes_it(tmp_path):
    from aishorts.stages.tts.voices import catalogue

    quick = write_pipeline(tmp_path / "quick.toml", {"name": "grow", "ceiling": "200M", "params": {"mb": 40,
                                                                                                   "rate_mb_s": 40}})
    french = next(lang for lang in catalogue() if lang["code"] == "fr-fr")
    with running_server(tmp_path / "runs", "--pipeline", quick) as server, browser_page(server) as page:
        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert page.request.get(f"{server.url}/{icon}").headers["content-type"] == "image/svg+xml"

        english = next(lang for lang in catalogue() if lang["code"] == "en-us")
        expect(page.locator("#voice option")).to_have_count(len(english["voices"]) + 1, timeout=60_000)  # arrived
        page.select_option("#language", "fr-fr")  # the voices offered are those of the language chosen
        options = page.locator("#voice option").evaluate_all("options => options.map(o => o.value)")
        assert options == ["", *[voice["name"] for voice in french["voices"]]]
        page.select_option("#language", "")  # the default, English (US)
        expect(page.locator("#voice option")).to_have_count(len(english["voices"]) + 1)

        page.select_option("#voice", "am_adam")  # a preview: the real narrator says one sentence, the page plays it
        page.click("#preview-voice")
        sample = page.locator("#voice-sample")
        expect(sample).to_be_visible(timeout=300_000)
        seconds, played = sample.evaluate("""a => new Promise((resolve, reject) => {
            a.muted = true;
            a.addEventListener('error', () => reject(new Error('the sample did not load')));
            const played = () => a.currentTime > 0.3 ? resolve([a.duration, a.currentTime]) : setTimeout(played, 100);
            a.currentTime = 0;
            a.play().then(played, reject);
        })""")
        assert 1.5 < seconds < 15 and played > 0.3, (seconds, played)  # it plays, past its first words
        expect(page.locator("#form-error")).to_be_hidden()
        expect(page.locator("li.task")).to_have_count(0)  # a preview is no short: no card, and its task is gone
        with server.client() as client:
            assert wait_for(lambda: client.get("/api/v1/tasks").json()["data"]["total"] == 0, timeout=30)

        page.fill("#topic", "Deleted from the page")
        page.locator("details").evaluate("details => details.open = true")
        page.select_option("#pipeline", "quick")
        page.fill("#caption_y", "30")  # captions at a height of the person's choosing
        card = submitted(page, server)
        expect(card.locator(".log li").last).to_have_text(re.compile(r"^grow: \d+ MB$"), timeout=120_000)  # live lines
        expect(card).to_have_attribute("data-status", "done", timeout=120_000)
        assert card.locator(".log li").count() <= 6
        task_id = card.get_attribute("data-task-id")
        assert read_manifest(tmp_path / "runs" / task_id / "run.json").params.timeline.caption_y == 30

        page.reload()  # a finished card, never watched while it ran, still draws its memory over time
        card = page.locator(f"li.task[data-task-id='{task_id}']")
        expect(card.locator(".rss-line")).to_have_attribute("points", re.compile(r"\d+(\.\d+)?,\d"), timeout=30_000)
        expect(card.locator("button.cancel")).to_be_hidden()

        card.locator("button.delete").click()
        expect(card).to_have_count(0, timeout=30_000)
        with server.client() as client:
            assert client.get(f"/api/v1/tasks/{task_id}").status_code == 404
        assert not (tmp_path / "runs" / task_id).exists()
        page.reload()
        expect(page.locator("li.task")).to_have_count(0)

        page.fill("#topic", "Two takes on one topic")  # variants: one short per variant, each with its own seed
        page.locator("details").evaluate("details => details.open = true")
        page.select_option("#pipeline", "quick")
        page.fill("#variants", "2")
        page.click("#submit")
        expect(page.locator("li.task")).to_have_count(2, timeout=60_000)
        ids = page.locator("li.task").evaluate_all("cards => cards.map(card => card.dataset.taskId)")
        for each in ids:
            expect(page.locator(f"li.task[data-task-id='{each}']")).to_have_attribute("data-status", "done",
                                                                                     timeout=120_000)
        seeds = {read_manifest(tmp_path / "runs" / each / "run.json").params.script.llm.seed for each in ids}
        assert len(seeds) == 2 and None not in seeds, seeds
        page.check("input[name=what][value=script]")  # the person's own script is one short: said, nothing made
        page.fill("#script", "Cats sleep a lot. They dream too.")
        page.click("#submit")
        expect(page.locator("#form-error")).to_contain_text("variants are written from a topic or a category")
        expect(page.locator("li.task")).to_have_count(2)


def test_a_task_submitted_while_the_list_is_on_its_way_keeps_its_card(tmp_path):
    quick = write_pipeline(tmp_path / "quick.toml", {"name": "grow", "ceiling": "200M", "params": {"mb": 10}})
    with running_server(tmp_path / "runs", "--pipeline", quick) as server, browser_page(server) as page:
        held = []  # the list of tasks the page asks for on loading, answered as it was then, but only later

        def hold(route) -> None:
            held.append((route, route.fetch()))

        page.route("**/api/v1/tasks?page_size=*", hold)
        page.reload()
        deadline = time.monotonic() + 60
        while not held and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert held, "the page never asked for its tasks"

        page.fill("#topic", "Newer than the list")
        page.locator("details").evaluate("details => details.open = true")
        page.select_option("#pipeline", "quick")
        card = submitted(page, server)
        for route, answer in held:  # a list without the new task: older than it, not a sign it was deleted
            route.fulfill(response=answer)
        page.unroute("**/api/v1/tasks?page_size=*")
        expect_or_say(server, card, "data-status", "done", timeout=120_000)
        expect(page.locator("li.task")).to_have_count(1)


class LlamaCppLike(LoopbackServer):
    """A loopback server speaking what `--llm auto` looks for (llama.cpp's /v1/models) and answering every chat
    with the stage tests' well-formed script, so the script stage runs for real without a model."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__()

    def _handler(self) -> type[QuietHandler]:
        reply = self.reply

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_json(200, {"data": [{"id": "loopback.gguf"}]})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_json(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]})

        return Handler


def test_a_person_has_the_script_written_first_edits_it_and_the_short_is_made_from_the_edited_words(tmp_path):
    import json

    from urllib.parse import urlsplit

    from tests.llm_server import closed_port_url
    from tests.test_stage_theme_script import GOOD_SCRIPT

    quick = write_pipeline(tmp_path / "quick.toml", {"name": "grow", "ceiling": "200M", "params": {"mb": 10}})
    with LlamaCppLike(GOOD_SCRIPT) as llm:
        env = {key: value for key, value in os.environ.items() if key not in ("OPENAI_API_KEY", "OPENROUTER_API_KEY")}
        env.update(AISHORTS_LLAMACPP_URL=llm.root, OLLAMA_HOST=urlsplit(closed_port_url()).netloc)  # no Ollama here
        with running_server(tmp_path / "runs", "--pipeline", quick, env=env) as server, \
                browser_page(server) as page:
            page.fill("#topic", "Why octopuses have three hearts")
            page.click("#write-script")
            expect(page.locator("#script")).to_be_visible(timeout=300_000)  # written, and shown to be edited
            written = page.input_value("#script")
            assert written.startswith("An octopus has three hearts, and two of them take breaks.")
            assert "Follow for more strange facts about the ocean." in written
            edited = written.replace("Follow for more strange facts about the ocean.", "Share this with a friend.")
            page.fill("#script", edited)
            assert "octopus crawling on sea floor" in page.input_value("#broll_term").split(", ")  # the model's terms
            page.fill("#broll_term", "octopus heart, coral reef")

            page.locator("details").evaluate("details => details.open = true")
            page.select_option("#pipeline", "quick")
            card = submitted(page, server)
            expect(card).to_have_attribute("data-status", "done", timeout=120_000)
            run_json = json.loads((tmp_path / "runs" / card.get_attribute("data-task-id") / "run.json").read_text())
            assert run_json["params"]["script"]["script_text"] == edited  # what was rendered is what was edited
            assert run_json["params"]["script"]["broll_terms"] == ["octopus heart", "coral reef"]
            assert page.locator("li.task").count() == 1  # writing the script left no task behind


def test_a_task_of_several_videos_from_the_api_plays_the_first_on_its_card_and_links_the_others(tmp_path):
    from tests.serve_helpers import finished, submit
    from tests.test_serve_mpt import mpt_body, small_video
    from tests.test_serve_mpt_videos import video_runs

    quick = write_pipeline(tmp_path / "quick.toml", {"name": "grow", "ceiling": "200M", "params": {"mb": 10}})
    with running_server(tmp_path / "runs", "--pipeline", quick) as server, browser_page(server) as page:
        with server.client() as client:  # MoneyPrinterTurbo's client asks for two videos of one subject
            task_id = submit(client, **mpt_body(video_subject="Two tides", video_count=2, pipeline="quick"))
            assert finished(client, task_id)["state"] == 1
        runs = video_runs(tmp_path / "runs" / task_id)
        for seconds, run in enumerate(runs, 1):  # stand-ins for each run's render, told apart by their length
            small_video(run / "final.mp4")
            (run / "final.mp4").write_bytes((run / "final.mp4").read_bytes() + bytes(seconds))
        page.reload()
        card = page.locator(f"li.task[data-task-id='{task_id}']")
        expect(card.locator("video")).to_have_count(1, timeout=30_000)
        link = card.locator("a.more-video")
        expect(link).to_have_text("video 2")
        fetched = page.request.get(link.get_attribute("href"))
        assert fetched.ok and fetched.body() == (runs[1] / "final.mp4").read_bytes()

"""Sources a script is written from: the user's files and pages, ZIM archives, and wikis over the Action API.

Every input is real and made here: text, Markdown and HTML files, a PDF written
byte by byte, a ZIM archive written with libzim's Creator, pages served by a
loopback HTTP server, and a loopback MediaWiki (tests/wiki_server.py) that
answers in both formatversions, late, or with nothing.
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from source_files import OCTOPUS, make_pdf, make_zim
from aishorts.stages.grounding.passages import select, split_passages
from aishorts.stages.grounding.sources import MAX_FETCH_BYTES, SourceProblem, read_source
from aishorts.stages.grounding.wiki import api_url, lookup
from wiki_server import WikiServer

pytestmark = pytest.mark.usefixtures("own_cache")  # wiki answers are cached in the stages' cache: each test gets its own

HEARTS = OCTOPUS["Octopus"]


# --- files --------------------------------------------------------------------------------


def test_a_text_file_is_read_as_written_and_named_by_its_file(tmp_path):
    path = tmp_path / "octopus_notes.txt"
    path.write_text(HEARTS + "\n")
    [source] = read_source(str(path), "octopus")
    assert source.text == HEARTS
    assert (source.title, source.origin) == ("octopus notes", "octopus_notes.txt")


def test_markdown_loses_its_marks_and_gives_its_heading_as_the_title(tmp_path):
    path = tmp_path / "octopus.md"
    path.write_text("# The octopus\n\nAn **octopus** has [three hearts](https://example.org/h).\n\n"
                    "```\ncode = 1\n```\n- Its blood is *blue*.\n")
    [source] = read_source(str(path), "octopus")
    assert source.title == "The octopus"
    assert "An octopus has three hearts." in source.text and "Its blood is blue." in source.text
    assert "code" not in source.text and "https" not in source.text and "*" not in source.text


def test_a_saved_html_page_gives_its_paragraphs_without_scripts_menus_or_tables(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("<!doctype html><html><head><title>Octopus - Site</title><script>var x = 1;</script></head>"
                    "<body><nav>Home | About</nav><h1>Octopus</h1><p>An octopus has <b>three</b> hearts.</p>"
                    "<table><tr><td>Kingdom</td></tr></table><p>Its blood is blue.</p><footer>(c) site</footer>"
                    "</body></html>")
    [source] = read_source(str(path), "octopus")
    assert source.title == "Octopus"
    assert source.text.splitlines() == ["Octopus", "An octopus has three hearts.", "Its blood is blue."]


def test_a_pdf_gives_the_text_of_its_pages_and_its_title(tmp_path):
    path = make_pdf(tmp_path / "report.pdf", "Octopus anatomy", ["An octopus has three hearts.", "Its blood",
                                                                  "is blue (it holds copper)."])
    [source] = read_source(str(path), "octopus")
    assert source.title == "Octopus anatomy"
    assert "An octopus has three hearts." in source.text
    assert "Its blood is blue (it holds copper)." in source.text


def test_a_zim_archive_gives_the_articles_its_full_text_index_finds_with_wikipedias_licence(tmp_path):
    path = make_zim(tmp_path / "wikipedia_test.zim", OCTOPUS)
    sources = read_source(str(path), "how bees make honey")
    assert [s.title for s in sources][0] == "Honey bee"
    assert "nectar" in sources[0].text and "Infobox" not in sources[0].text
    assert "CC BY-SA 4.0" in sources[0].licence and "Wikipedia contributors" in sources[0].credit
    assert sources[0].origin == "wikipedia_test.zim: Honey_bee"


@pytest.mark.parametrize("name, data, message", [
    ("missing.txt", None, "no such file"),
    ("blob.txt", b"\x00\x01\x02binary", "not UTF-8|looks binary"),
    ("fake.pdf", b"%PDF-1.4 nonsense", "not a readable PDF|no text layer"),
    ("fake.zim", b"not a zim", "not a readable ZIM"),
])
def test_a_source_that_cannot_be_read_says_which_and_why(tmp_path, name, data, message):
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(SourceProblem, match=message):
        read_source(str(path), "octopus")


# --- URLs ---------------------------------------------------------------------------------


class _Pages:
    """Loopback pages: an HTML article, a page too large to fetch, redirects (`/moved-to-URL`, `|` for `/`);
    headers recorded."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                pages.headers.append(dict(self.headers.items()))
                if self.path.startswith("/moved-to-"):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/moved-to-").replace("|", "/"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/octopus":
                    body, kind = f"<html><head><title>Octopus</title></head><body><p>{HEARTS}</p></body></html>".encode(), "text/html; charset=utf-8"
                else:
                    body, kind = b"a" * (MAX_FETCH_BYTES + 10), "text/plain"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_page_is_fetched_without_credentials_and_a_huge_one_is_refused(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    pages = _Pages()
    with pages as base:
        [source] = read_source(f"{base}/octopus", "octopus")
        with pytest.raises(SourceProblem, match="larger than"):
            read_source(f"{base}/huge", "octopus")
    assert source.title == "Octopus" and source.origin == f"{base}/octopus" and "three hearts" in source.text
    assert all("Authorization" not in h and "aishorts-runner" in h["User-Agent"] for h in pages.headers)


def test_a_page_redirected_to_another_page_is_read_and_one_redirected_off_the_web_is_refused(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with _Pages() as base:
        [source] = read_source(f"{base}/moved-to-{base.replace('/', '|')}|octopus", "octopus")
        assert source.origin == f"{base}/octopus", "the address the text came from, after the redirect"
        for elsewhere in ("ftp:||127.0.0.1:9|octopus.txt", "file:|||etc|hostname"):
            with pytest.raises(SourceProblem, match="answered HTTP 302"):
                read_source(f"{base}/moved-to-{elsewhere}", "octopus")


def test_a_named_pipe_given_as_a_source_is_refused_at_once_not_waited_on(tmp_path):
    pipe = tmp_path / "notes.txt"
    os.mkfifo(pipe)
    started = time.monotonic()
    with pytest.raises(SourceProblem, match="not a regular file"):
        read_source(str(pipe), "octopus")
    assert time.monotonic() - started < 10


# --- passages -----------------------------------------------------------------------------


def test_passages_keep_whole_sentences_and_retrieval_keeps_the_ones_about_the_topic():
    passages = split_passages([HEARTS, OCTOPUS["Honey bee"], "== References ==\nSmith, J. (2001). Octopus."])
    assert all(p.text.endswith(".") for p in passages)
    assert not any("Smith" in p.text for p in passages)
    chosen = select(passages, "how bees make honey from nectar", budget_words=80)
    assert chosen and all(p.source == 1 for p in chosen)
    assert sum(len(p.text.split()) for p in chosen) <= 80


# --- wikis --------------------------------------------------------------------------------


def test_the_default_wiki_is_wikipedia_in_the_narrations_language_and_off_is_off():
    assert api_url("auto", "pt-br") == "https://pt.wikipedia.org/w/api.php"
    assert api_url("auto", "en-us") == "https://en.wikipedia.org/w/api.php"
    assert api_url("https://wiki.example.org", "en") == "https://wiki.example.org/w/api.php"
    assert api_url("https://wiki.example.org/api.php", "en") == "https://wiki.example.org/api.php"
    assert api_url("off", "en") is None


@pytest.mark.parametrize("formatversion", [1, 2])
def test_a_wiki_is_searched_and_its_article_read_in_either_formatversion(formatversion):
    with WikiServer(OCTOPUS, formatversion=formatversion) as wiki:
        found = lookup("Why octopuses have three hearts", wiki.url, "en-us")
    [article] = found.sources
    assert article.title == "Octopus" and article.text == HEARTS
    assert article.origin == f"{wiki.url}/wiki/Octopus"
    assert "Creative Commons Attribution-Share Alike 4.0" in article.licence
    assert wiki.most_in_flight == 1
    assert all("aishorts-runner" in headers["User-Agent"] for _, headers in wiki.requests)


def test_wiki_answers_are_cached_so_a_second_lookup_asks_nothing():
    with WikiServer(OCTOPUS) as wiki:
        first = lookup("octopus hearts", wiki.url, "en")
        asked = len(wiki.requests)
        second = lookup("octopus hearts", wiki.url, "en")
    assert asked == 2 and len(wiki.requests) == asked
    assert first == second


def test_a_wiki_with_no_page_for_the_topic_gives_no_source_and_says_so():
    with WikiServer(OCTOPUS) as wiki:
        found = lookup("medieval siege engines", wiki.url, "en")
    assert found.sources == [] and "has no article" in found.why


def test_a_wiki_that_does_not_answer_in_time_is_given_up_quickly():
    with WikiServer(OCTOPUS, delay_s=8) as wiki:
        start = time.monotonic()
        found = lookup("octopus hearts", wiki.url, "en")
        waited = time.monotonic() - start
    assert found.sources == [] and "within" in found.why
    assert waited < 7


def test_a_wiki_that_cannot_be_reached_is_not_an_error():
    found = lookup("octopus hearts", "http://127.0.0.1:9", "en")
    assert found.sources == [] and "did not answer" in found.why

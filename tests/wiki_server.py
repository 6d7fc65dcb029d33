"""A real MediaWiki Action API on 127.0.0.1 for tests: search and plain-text extracts of a few articles.

`WikiServer(articles, formatversion=2)` answers GET /w/api.php the way
MediaWiki does: `list=search` with the articles whose text holds any word of
`srsearch` (most matching words first), `prop=extracts|info` with the
article's plain text, its `fullurl` and the wiki's `rightsinfo`, in
formatversion 1 (pages keyed by page id, `missing` as "") or 2 (a list, as
booleans), whatever formatversion the client asked for, as an older wiki
might. `delay_s` makes every answer late (a wiki that times out); no articles
makes a wiki where nothing is found. Every request is recorded with its
headers, so tests can check the User-Agent and that nothing runs in parallel.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from tests.loopback import LoopbackServer

RIGHTS = {"url": "https://creativecommons.org/licenses/by-sa/4.0/", "text": "Creative Commons Attribution-Share Alike 4.0"}


class WikiServer(LoopbackServer):
    def __init__(self, articles: dict[str, str], *, formatversion: int = 2, delay_s: float = 0.0,
                 sitename: str = "Testpedia") -> None:
        self.articles = articles
        self.formatversion = formatversion
        self.delay_s = delay_s
        self.sitename = sitename
        self.requests: list[tuple[dict[str, str], dict[str, str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        super().__init__("127.0.0.1")

    @property
    def url(self) -> str:
        return self.root + ""

    # --- the API ---------------------------------------------------------------------------

    def answer(self, query: dict[str, str]) -> dict:
        if query.get("action") != "query":
            return {"error": {"code": "badvalue", "info": "unknown action"}}
        if query.get("list") == "search":
            return {"batchcomplete": True if self.formatversion == 2 else "", "query": {"search": self._search(query["srsearch"])}}
        if "extracts" in query.get("prop", ""):
            return {"batchcomplete": True if self.formatversion == 2 else "", "query": self._pages(query["titles"])}
        return {"error": {"code": "badvalue", "info": "unsupported query"}}

    def _search(self, text: str) -> list[dict]:
        terms = {w[:5] for w in re.findall(r"\w+", text.lower()) if len(w) > 3}
        hits = []
        for page_id, (title, body) in enumerate(self.articles.items(), 1):
            words = {w[:5] for w in re.findall(r"\w+", (title + " " + body).lower())}
            if terms & words:
                hits.append((-len(terms & words), page_id, title))
        return [{"ns": 0, "title": title, "pageid": page_id} for _, page_id, title in sorted(hits)]

    def _pages(self, title: str) -> dict:
        extra = {"rightsinfo": RIGHTS, "general": {"sitename": self.sitename}}
        if title not in self.articles:
            page = {"ns": 0, "title": title, "missing": True if self.formatversion == 2 else ""}
            pages = [page] if self.formatversion == 2 else {"-1": page}
            return {"pages": pages, **extra}
        page_id = list(self.articles).index(title) + 1
        path = urllib.parse.quote(title.replace(" ", "_"))
        page = {"pageid": page_id, "ns": 0, "title": title, "extract": self.articles[title],
                "fullurl": f"{self.url}/wiki/{path}", "canonicalurl": f"{self.url}/wiki/{path}"}
        return {"pages": [page] if self.formatversion == 2 else {str(page_id): page}, **extra}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                with server._lock:
                    server.requests.append((query, dict(self.headers.items())))
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    if parts.path != "/w/api.php":
                        body, status = b'{"error": {"code": "notfound"}}', 404
                    else:
                        body, status = json.dumps(server.answer(query)).encode(), 200
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler

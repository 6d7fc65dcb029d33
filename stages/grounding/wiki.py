"""Looking a topic up on a MediaWiki (Wikipedia by default) through its Action API, politely and briefly.

Responsible for: which wiki to ask (`wiki_url`: "auto" is Wikipedia in the
short's language, "off" none, else any MediaWiki's address or its api.php),
finding the best article for a topic (`list=search`), fetching its plain text,
address and the wiki's licence in one request (`prop=extracts|info`,
`explaintext`, `meta=siteinfo` rightsinfo), reading both `formatversion` 1
and 2, and caching every answer in the stages' cache. Wikimedia's etiquette is
kept: a descriptive User-Agent, one request at a time, short timeouts. A wiki
that cannot be reached, is slow, or has no page is not an error: `lookup`
returns no source and says why, and the script stage goes on without it.

Not responsible for the user's own sources (stages/grounding/sources.py) nor for what
is done with the text (stages/grounding/passages.py, stages/script/stage.py).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import urllib.parse
from dataclasses import dataclass

from aishorts.ipc.sizes import MiB
from aishorts.stages.common import http
from aishorts.stages.common.cache import cache_root, publish, scratch_for
from aishorts.stages.grounding.sources import WIKIPEDIA_LICENCE, Source, wikipedia_credit

TIMEOUT_S = 4.0
"""Per request: a wiki slower than this is skipped, not waited for."""
RESOLVE_TIMEOUT_S = 2.0
"""Name lookup is not bounded by socket timeouts; a machine with no network must not wait on it."""
MAX_ANSWER_BYTES = 4 * MiB
ARTICLES = 2
"""Articles fetched for a topic: the best search hit, and the next one when the first is short."""
SHORT_ARTICLE_WORDS = 400


@dataclass(frozen=True)
class Lookup:
    sources: list[Source]
    why: str
    """What happened, for the log: which article, or why none."""
    answered: bool = True
    """False when the wiki did not answer (off, unreachable, too slow, not a MediaWiki): it says nothing of the topic."""


def api_url(wiki_url: str, language: str) -> str | None:
    """The api.php to ask, or None when lookups are off."""
    value = wiki_url.strip()
    if value.lower() in ("off", "none", "no", ""):
        return None
    if value.lower() == "auto":
        code = language.strip().lower().replace("_", "-").split("-")[0] or "en"
        return f"https://{code}.wikipedia.org/w/api.php"
    if value.rstrip("/").endswith(".php"):
        return value.rstrip("/")
    return value.rstrip("/") + "/w/api.php"


def lookup(topic: str, wiki_url: str, language: str) -> Lookup:
    """The wiki's best articles for `topic`, or none with the reason; never raises for a wiki's failure."""
    api = api_url(wiki_url, language)
    if api is None:
        return Lookup([], "wiki lookups are off (--wiki-url off)", answered=False)
    try:
        return _lookup(api, topic)
    except WikiUnavailable as exc:
        return Lookup([], f"{api} did not answer usefully ({exc})", answered=False)


class WikiUnavailable(Exception):
    pass


def _lookup(api: str, topic: str) -> Lookup:
    found = _get(api, {"action": "query", "list": "search", "srsearch": topic, "srlimit": "3",
                       "srprop": "", "srwhat": "text"})
    titles = [hit["title"] for hit in _query(found).get("search", []) if isinstance(hit, dict) and hit.get("title")]
    if not titles:
        return Lookup([], f"{api} has no article for {topic!r}")
    sources: list[Source] = []
    for title in titles[:ARTICLES]:
        page = _article(api, title)
        if page is not None:
            sources.append(page)
            if len(page.text.split()) >= SHORT_ARTICLE_WORDS:
                break
    if not sources:
        return Lookup([], f"{api}: the articles found for {topic!r} have no text")
    names = ", ".join(f'"{s.title}"' for s in sources)
    return Lookup(sources, f"{api}: {names}")


def _article(api: str, title: str) -> Source | None:
    answer = _get(api, {"action": "query", "prop": "extracts|info", "inprop": "url", "explaintext": "1",
                        "exsectionformat": "wikitext", "redirects": "1", "titles": title,
                        "meta": "siteinfo", "siprop": "rightsinfo|general"})
    query = _query(answer)
    pages = query.get("pages", [])
    if isinstance(pages, dict):  # formatversion 1: pages keyed by page id ("-1" when missing)
        pages = list(pages.values())
    page = next((p for p in pages if isinstance(p, dict) and "missing" not in p and p.get("extract")), None)
    if page is None:
        return None
    rights = query.get("rightsinfo") if isinstance(query.get("rightsinfo"), dict) else {}
    general = query.get("general") if isinstance(query.get("general"), dict) else {}
    url = page.get("fullurl") or page.get("canonicalurl") or f"{api.rsplit('/w/', 1)[0]}/wiki/{urllib.parse.quote(title)}"
    licence = _licence(rights, api)
    wikipedia = "wikipedia" in (general.get("sitename", "") + api).lower()
    site = general.get("sitename") or urllib.parse.urlsplit(api).hostname or "the wiki"
    credit = wikipedia_credit(page["title"]) if wikipedia else f'text from "{page["title"]}" on {site}, by its contributors'
    return Source(str(page["title"]), str(url), licence, str(page["extract"]), credit)


def _licence(rights: dict, api: str) -> str:
    text, url = str(rights.get("text") or "").strip(), str(rights.get("url") or "").strip()
    if text or url:
        return f"{text} ({url})" if text and url else text or url
    return WIKIPEDIA_LICENCE if "wikipedia.org" in api else ""


def _query(answer: object) -> dict:
    query = answer.get("query") if isinstance(answer, dict) else None
    return query if isinstance(query, dict) else {}


def _get(api: str, params: dict[str, str]) -> object:
    """One GET to the API (JSON, formatversion 2 asked for), from the cache when asked before."""
    query = {**params, "format": "json", "formatversion": "2", "utf8": "1"}
    url = f"{api}?{urllib.parse.urlencode(sorted(query.items()))}"
    cached = cache_root() / "wiki" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")
    if cached.is_file():
        try:
            return json.loads(cached.read_bytes())
        except ValueError:
            cached.unlink(missing_ok=True)
    data = _fetch(url)
    try:
        answer = json.loads(data)
    except ValueError:
        raise WikiUnavailable("its answer is not JSON") from None
    if isinstance(answer, dict) and "error" in answer:
        raise WikiUnavailable(f"it answered an error: {str(answer['error'])[:200]}")
    scratch = scratch_for(cached)
    scratch.write_bytes(data)
    publish(scratch, cached)
    return answer


def _fetch(url: str) -> bytes:
    _resolve_quickly(urllib.parse.urlsplit(url).hostname or "")
    try:
        answer = http.get(url, limit=MAX_ANSWER_BYTES, timeout_s=TIMEOUT_S, accept="application/json")
    except http.NoAnswer as exc:
        raise WikiUnavailable(f"no answer within {TIMEOUT_S:g} s" if exc.timed_out else exc.reason) from None
    except http.TooLarge:
        raise WikiUnavailable(f"its answer is larger than {MAX_ANSWER_BYTES // MiB} MiB") from None
    except http.FetchFailed as exc:
        raise WikiUnavailable(str(exc)) from None
    return answer.body


def _resolve_quickly(host: str) -> None:
    """WikiUnavailable unless `host`'s name resolves within RESOLVE_TIMEOUT_S (a thread: getaddrinfo has no timeout)."""
    outcome: list[BaseException | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, None)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(RESOLVE_TIMEOUT_S)
    if not outcome:
        raise WikiUnavailable(f"{host} did not resolve within {RESOLVE_TIMEOUT_S:g} s")
    if outcome[0] is not None:
        raise WikiUnavailable(f"{host} does not resolve ({outcome[0]})")

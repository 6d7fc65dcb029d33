"""Source texts a script can be written from: the user's files and pages, and Kiwix ZIM archives.

Responsible for turning each `--source` the user gave (a path or an http(s)
URL) into `Source`s: plain text of one document with its title, where it came
from and its licence. Plain text and Markdown are read as text, HTML (a saved
page, or a page fetched with a byte cap and a timeout, with no credentials) is
reduced to its readable paragraphs, PDF is read with pypdf, and a ZIM archive
is searched for the topic with its own full-text index (libzim). A source
that cannot be read is a `SourceProblem` with a message the user can act on.

Not responsible for Wikipedia and other wikis over the network (stages/grounding/wiki.py),
for cutting texts into passages or choosing among them (stages/grounding/passages.py),
nor for what the script says (stages/script/stage.py).
"""

from __future__ import annotations

import errno
import html
import re
import urllib.parse
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from aishorts.ipc.files import read_regular
from aishorts.ipc.sizes import MiB
from aishorts.ipc.text import looks_binary
from aishorts.stages.common import http

FETCH_TIMEOUT_S = 10.0
MAX_FETCH_BYTES = 5 * MiB
"""A page or PDF fetched from a URL larger than this is refused: a source is an article, not a library."""
MAX_FILE_BYTES = 50 * MiB
"""A text, Markdown, HTML or PDF file larger than this is refused (ZIM archives are read in place, any size)."""
ZIM_ARTICLES = 3
"""Articles taken from a ZIM archive for one topic: the best full-text matches."""
WIKIPEDIA_LICENCE = "CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)"


class SourceProblem(Exception):
    """A source named by the user cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Source:
    title: str
    origin: str
    """The URL, or the file's name (a ZIM article: the archive's name and the article's path)."""
    licence: str
    """As far as the source says it; empty when it says nothing."""
    text: str
    credit: str = ""
    """What publishing the short requires saying about this source, when its licence asks for credit."""


def read_sources(refs: list[str], topic: str) -> list[Source]:
    """Every source the user named, in order; a ZIM archive gives the articles that best match `topic`."""
    found: list[Source] = []
    for ref in refs:
        found.extend(read_source(ref, topic))
    return found


def read_source(ref: str, topic: str) -> list[Source]:
    if ref.startswith(("http://", "https://")):
        return [fetch_url(ref)]
    path = Path(ref)
    if not path.exists():
        raise SourceProblem(f"source {ref}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".zim" and path.is_file():
        return read_zim(path, topic)
    data = _read_capped(path)
    if suffix == ".pdf" or data.startswith(b"%PDF-"):
        return [pdf_source(data, path.name)]
    text = _decode(data, ref)
    if suffix in (".html", ".htm", ".xhtml") or re.match(r"\s*(?:<!doctype html|<html)", text[:200], re.I):
        title, body = html_to_text(text)
        return [Source(title or path.stem, path.name, "", body)]
    if suffix in (".md", ".markdown"):
        title, body = markdown_to_text(text)
        return [Source(title or path.stem, path.name, "", body)]
    return [Source(path.stem.replace("_", " "), path.name, "", text.strip())]


def _read_capped(path: Path) -> bytes:
    """The file's bytes; a pipe, device or folder is refused rather than waited on."""
    try:
        return read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise SourceProblem(f"source {path}: larger than {MAX_FILE_BYTES // MiB} MiB; give the article, not the"
                                " book") from None
        raise SourceProblem(f"source {path}: cannot read it ({exc.strerror})") from None


def _decode(data: bytes, ref: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceProblem(f"source {ref}: not UTF-8 text, HTML, PDF or a ZIM archive") from None
    if looks_binary(text):
        raise SourceProblem(f"source {ref}: looks binary; give text, Markdown, HTML, PDF or a ZIM archive")
    return text


# --- URLs ------------------------------------------------------------------------------------


def fetch_url(url: str) -> Source:
    """A page or PDF at `url`: no credentials sent, at most MAX_FETCH_BYTES read, FETCH_TIMEOUT_S per read."""
    try:
        answer = http.get(url, limit=MAX_FETCH_BYTES, timeout_s=FETCH_TIMEOUT_S,
                          accept="text/html,text/plain,application/pdf")
    except http.HttpStatus as exc:
        raise SourceProblem(f"source {url}: the server answered HTTP {exc.code}") from None
    except http.NoAnswer as exc:
        raise SourceProblem(f"source {url}: cannot fetch it ({exc.reason})") from None
    except http.TooLarge:
        raise SourceProblem(f"source {url}: larger than {MAX_FETCH_BYTES // MiB} MiB; give a shorter page") from None
    data, kind, final = answer.body, answer.content_type, answer.url
    charset = answer.charset or "utf-8"
    if kind == "application/pdf" or data.startswith(b"%PDF-"):
        return pdf_source(data, final)
    text = data.decode(charset, "replace")
    if kind in ("text/html", "application/xhtml+xml") or re.match(r"\s*(?:<!doctype html|<html)", text[:200], re.I):
        title, body = html_to_text(text)
        return Source(title or final, final, "", body)
    if not kind.startswith("text/"):
        raise SourceProblem(f"source {url}: is {kind}, not a page, text or PDF")
    return Source(urllib.parse.urlsplit(final).path.rsplit("/", 1)[-1] or final, final, "", text.strip())


# --- HTML and Markdown -------------------------------------------------------------------------

_SKIPPED = {"script", "style", "nav", "footer", "header", "aside", "noscript", "form", "svg", "table", "figure",
            "sup", "button", "template"}
_BLOCKS = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "br", "section", "article", "blockquote",
           "dd", "dt", "tr", "main", "ul", "ol"}


class _Readable(HTMLParser):
    """The text a reader sees: paragraphs, headings and list items; no scripts, menus or tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.heading = ""
        self._skip = 0
        self._in_title = False
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs) -> None:
        self._tag(tag, opens=True)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, opens=False)

    def _tag(self, tag: str, opens: bool) -> None:
        if tag in _SKIPPED:
            self._skip = self._skip + 1 if opens else max(self._skip - 1, 0)
        elif tag == "title":
            self._in_title = opens
        elif tag == "h1":
            self._in_h1 = opens
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            if self._in_h1:
                self.heading += data
            self.parts.append(data)


def html_to_text(page: str) -> tuple[str, str]:
    """(title, readable text) of an HTML page, one paragraph a line."""
    reader = _Readable()
    reader.feed(page)
    reader.close()
    lines = (" ".join(line.split()) for line in "".join(reader.parts).splitlines())
    title = " ".join((reader.heading or reader.title).split())
    return title, "\n".join(line for line in lines if line)


_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")


def markdown_to_text(text: str) -> tuple[str, str]:
    """(first heading, text) of Markdown: links as their words, no emphasis, code blocks or heading marks."""
    title, lines, fenced = "", [], False
    for line in text.splitlines():
        if line.strip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or line.strip().startswith("|"):
            continue
        heading = re.match(r"\s*#{1,6}\s+(.*)", line)
        if heading:
            title = title or heading.group(1).strip()
            lines.append("")
            continue
        line = _MD_LINK.sub(r"\1", line)
        line = _MD_MARKS.sub(r"\2", line)
        line = re.sub(r"^\s*(?:[-*+]|\d+[.)]|>)\s+", "", line)
        lines.append(html.unescape(line))
    return title, "\n".join(lines).strip()


# --- PDF -------------------------------------------------------------------------------------------


def pdf_source(data: bytes, origin: str) -> Source:
    """The text of every page of a PDF (pypdf), with its title from the document's metadata or its name."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise SourceProblem(f"source {origin}: not a readable PDF ({exc})") from None
    text = "\n".join(pages).strip()
    if not text:
        raise SourceProblem(f"source {origin}: the PDF has no text layer (a scan?); give its text instead")
    name = origin.rsplit("/", 1)[-1]
    return Source(str(meta_title).strip() or Path(name).stem.replace("_", " "), origin, "", _join_pdf_lines(text))


def _join_pdf_lines(text: str) -> str:
    """PDF text breaks lines inside sentences; rejoin them, keeping blank lines as paragraph breaks."""
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)  # a word hyphenated across a line break
    return "\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text))


# --- ZIM archives (Kiwix) --------------------------------------------------------------------------


def read_zim(path: Path, topic: str) -> list[Source]:
    """The ZIM_ARTICLES articles of the archive that best match `topic`, by its full-text (else title) index."""
    try:
        from libzim.reader import Archive
        from libzim.search import Query, Searcher
        from libzim.suggestion import SuggestionSearcher
    except ImportError:
        raise SourceProblem("reading a ZIM archive needs the libzim package: pip install libzim") from None
    try:
        archive = Archive(path)
    except RuntimeError as exc:
        raise SourceProblem(f"source {path}: not a readable ZIM archive ({exc})") from None
    if archive.has_fulltext_index:
        found = _zim_search(Searcher(archive), Query, topic)
    else:
        suggestions = SuggestionSearcher(archive).suggest(topic)
        found = list(suggestions.getResults(0, ZIM_ARTICLES))
    meta = _zim_metadata(archive)
    licence, credit = _zim_licence(meta)
    site = meta.get("Source", "")
    sources = []
    for entry_path in found:
        entry = archive.get_entry_by_path(entry_path)
        item = entry.get_item()
        if not item.mimetype.startswith("text/html"):
            continue
        title, body = html_to_text(bytes(item.content).decode("utf-8", "replace"))
        title = entry.title or title
        where = f"https://{site}/wiki/{urllib.parse.quote(entry_path.removeprefix('A/'))}" if site else f"{path.name}: {entry_path}"
        sources.append(Source(title, where, licence, body, credit.format(title=title) if credit else ""))
    if not sources:
        raise SourceProblem(f"source {path}: no article in the archive matches {topic!r}")
    return sources


def _zim_search(searcher, query_type, topic: str) -> list[str]:
    """Articles holding every content word of the topic first, then those holding the most of them.

    The index matches all words of a query; a topic in words the article never uses ("how", "make")
    would find nothing, so each word is also asked alone and the articles ranked by the words they hold.
    """
    from aishorts.stages.common.writing import content_words

    terms = list(dict.fromkeys(content_words(topic))) or topic.split()
    found = list(searcher.search(query_type().set_query(" ".join(terms))).getResults(0, ZIM_ARTICLES))
    if len(found) >= ZIM_ARTICLES or len(terms) < 2:
        return found
    score: dict[str, float] = {}
    for term in terms:
        for rank, path in enumerate(searcher.search(query_type().set_query(term)).getResults(0, 10)):
            score[path] = score.get(path, 0.0) + 1.0 / (rank + 1)
    ranked = sorted(score, key=lambda path: -score[path])
    return (found + [path for path in ranked if path not in found])[:ZIM_ARTICLES]


def _zim_metadata(archive) -> dict[str, str]:
    meta = {}
    for key in archive.metadata_keys:
        if key.startswith("Illustration_"):
            continue
        try:
            meta[key] = bytes(archive.get_metadata(key)).decode("utf-8", "replace")
        except (RuntimeError, KeyError):
            continue
    return meta


def _zim_licence(meta: dict[str, str]) -> tuple[str, str]:
    """(licence, credit template) from the archive's metadata; Wikipedia's text is CC BY-SA 4.0."""
    said = meta.get("License", "") or meta.get("Licence", "")
    wikipedia = any("wikipedia" in meta.get(k, "").lower() for k in ("Creator", "Publisher", "Source", "Name", "Title"))
    if wikipedia:
        return said or WIKIPEDIA_LICENCE, wikipedia_credit("{title}")
    creator = meta.get("Creator", "")
    return said, (f"text from \"{{title}}\" by {creator}" if creator else "")


def wikipedia_credit(title: str) -> str:
    return f'text from the Wikipedia article "{title}" by Wikipedia contributors'

"""Real source files for tests, made here: a PDF written byte by byte and a ZIM archive written with libzim.

`make_pdf(path, title, paragraphs)` writes a valid one-page PDF (Helvetica,
one text line per paragraph line, a correct xref table and an Info title) that
any reader extracts text from. `make_zim(path, articles, creator)` writes a
Kiwix-style ZIM with a full-text index through libzim's own Creator.
"""

from __future__ import annotations

from pathlib import Path

OCTOPUS = {
    "Octopus": (
        "An octopus has three hearts. Two branchial hearts pump blood through the gills, and a systemic heart"
        " pumps it through the body. The systemic heart stops beating when the octopus swims, which is why"
        " octopuses tire quickly and prefer to crawl. Octopus blood is blue because it carries oxygen with"
        " hemocyanin, a protein that contains copper. Hemocyanin carries oxygen well in cold water with little"
        " oxygen. An octopus has eight arms lined with suckers that can taste what they touch. About two thirds"
        " of its neurons lie in its arms. The giant Pacific octopus can weigh 50 kilograms."
    ),
    "Honey bee": (
        "Honey bees make honey from the nectar of flowers. Forager bees carry nectar back to the hive in a"
        " honey stomach. Worker bees pass the nectar from mouth to mouth and add enzymes that break down its"
        " sugars. They fan it with their wings until most of its water evaporates, then seal it in wax cells."
        " A worker bee makes about a twelfth of a teaspoon of honey in its life."
    ),
}


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(path: Path, title: str, lines: list[str]) -> Path:
    """A one-page PDF whose text layer holds `lines`, and whose Info dictionary holds `title`."""
    content = ["BT", "/F1 10 Tf", "12 TL", "40 800 Td"]
    for line in lines:
        content.append(f"({_pdf_escape(line)}) Tj T*")
    content.append("ET")
    stream = "\n".join(content).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title (" + _pdf_escape(title).encode("latin-1") + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def make_zim(path: Path, articles: dict[str, str], creator: str = "Wikipedia", language: str = "eng") -> Path:
    """A ZIM archive with one HTML article per (title, text), full-text indexed, as Kiwix's tools write them."""
    from libzim.writer import Creator, Hint, Item, StringProvider

    class Article(Item):
        def __init__(self, title: str, text: str) -> None:
            super().__init__()
            self.title, self.text = title, text

        def get_path(self) -> str:
            return self.title.replace(" ", "_")

        def get_title(self) -> str:
            return self.title

        def get_mimetype(self) -> str:
            return "text/html"

        def get_contentprovider(self):
            page = (f"<html><head><title>{self.title}</title></head><body><h1>{self.title}</h1>"
                    f"<p>{self.text}</p><table><tr><td>Infobox noise</td></tr></table></body></html>")
            return StringProvider(page)

        def get_hints(self):
            return {Hint.FRONT_ARTICLE: True}

    with Creator(str(path)).config_indexing(True, language) as zim:
        zim.set_mainpath(next(iter(articles)).replace(" ", "_"))
        for title, text in articles.items():
            zim.add_item(Article(title, text))
        for key, value in (("Title", f"{creator} test archive"), ("Creator", creator), ("Publisher", "tests"),
                           ("Language", language), ("Description", "articles for tests"),
                           ("Name", f"{creator.lower()}_test"), ("Date", "2026-12-05")):
            zim.add_metadata(key, value)
    return path

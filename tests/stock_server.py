"""A loopback server speaking Pexels' and Pixabay's video search APIs, for tests of stages/broll/stock.py.

`serve_stock(folder, videos, key)` is a `StockServer` (a `tests.loopback` server) bound to a free
127.0.0.1 port, for a `with` block. It answers, as the real APIs do (shapes from their public
documentation):

- `GET /videos/search?query=&per_page=&orientation=` (Pexels) when the
  `Authorization` header holds the key, else 401: `{page, per_page,
  total_results, videos: [{id, width, height, url, duration, user: {id, name,
  url}, video_files: [{id, quality, file_type, width, height, link}]}]}`;
- `GET /api/videos/?key=&q=&per_page=` (Pixabay) when `key` is the key, else
  400: `{total, totalHits, hits: [{id, pageURL, type, tags, duration, videos:
  {large, medium, small, tiny: {url, width, height, size}}, user_id, user}]}`;
- `GET /files/NAME`: the file NAME from `folder` (the video links point here).

A query with a word of a video's tags finds it; `redirect_to` makes both search
paths answer 302 to another address instead. Every request is recorded
(path and Authorization header) so tests can see where the key went. It stands
in for the internet in tests; it is not a mock of any library.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tests.loopback import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class StockFile:
    name: str
    width: int
    height: int


@dataclass(frozen=True)
class StockVideo:
    id: int
    slug: str
    author: str
    tags: tuple[str, ...]
    files: tuple[StockFile, ...]
    duration: int = 2


@dataclass(frozen=True)
class Seen:
    path: str
    authorization: str | None


class StockServer(LoopbackServer):
    def __init__(self, folder: Path, videos: list[StockVideo], key: str) -> None:
        self.folder = folder
        self.videos = videos
        self.key = key
        self.redirect_to: str | None = None
        self.seen: list[Seen] = []
        super().__init__()

    def _handler(self) -> type[QuietHandler]:
        return _answering(self)

    def found(self, query: str, count: int) -> list[StockVideo]:
        words = set(query.lower().split())
        return [v for v in self.videos if words & set(v.tags)][:count]

    def pexels(self, query: dict[str, str]) -> dict:
        videos = self.found(query.get("query", ""), int(query.get("per_page", "15")))
        return {
            "page": 1, "per_page": len(videos), "total_results": len(videos),
            "url": f"https://www.pexels.com/search/videos/{urllib.parse.quote(query.get('query', ''))}/",
            "videos": [{
                "id": v.id, "width": v.files[0].width, "height": v.files[0].height,
                "url": f"https://www.pexels.com/video/{v.slug}-{v.id}/", "image": "", "duration": v.duration,
                "user": {"id": 100 + v.id, "name": v.author, "url": f"https://www.pexels.com/@{v.author.lower()}"},
                "video_files": [{
                    "id": 1000 * v.id + n, "quality": "hd" if max(f.width, f.height) >= 1280 else "sd",
                    "file_type": "video/mp4", "width": f.width, "height": f.height, "fps": 25.0,
                    "link": f"{self.root}/files/{f.name}",
                } for n, f in enumerate(v.files)],
                "video_pictures": [],
            } for v in videos],
        }

    def pixabay(self, query: dict[str, str]) -> dict:
        videos = self.found(query.get("q", ""), int(query.get("per_page", "20")))
        sizes = ("large", "medium", "small", "tiny")
        return {
            "total": len(videos), "totalHits": len(videos),
            "hits": [{
                "id": v.id, "pageURL": f"https://pixabay.com/videos/{v.slug}-{v.id}/", "type": "film",
                "tags": ", ".join(v.tags), "duration": v.duration,
                "videos": {size: ({"url": f"{self.root}/files/{f.name}", "width": f.width, "height": f.height,
                                   "size": (self.folder / f.name).stat().st_size, "thumbnail": ""}
                                  if f else {"url": "", "width": 0, "height": 0, "size": 0, "thumbnail": ""})
                           for size, f in zip(sizes, [*v.files, None, None, None, None])},
                "views": 10, "downloads": 1, "likes": 1, "comments": 0,
                "user_id": 200 + v.id, "user": v.author, "userImageURL": "",
            } for v in videos],
        }


def _answering(server: StockServer) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            server.seen.append(Seen(self.path, self.headers.get("Authorization")))
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))
            if parts.path in ("/videos/search", "/api/videos/") and server.redirect_to:
                self.send_response(302)
                self.send_header("Location", f"{server.redirect_to}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif parts.path == "/videos/search":
                if self.headers.get("Authorization") != server.key:
                    self.send_json(401, {"error": "Unauthorized"})
                else:
                    self.send_json(200, server.pexels(query))
            elif parts.path == "/api/videos/":
                if query.get("key") != server.key:
                    self.send_json(400, {"error": "[ERROR 400] Invalid or missing API key"})
                else:
                    self.send_json(200, server.pixabay(query))
            elif parts.path.startswith("/files/"):
                path = server.folder / Path(parts.path).name
                if not path.is_file():
                    self.send_json(404, {"error": "not found"})
                    return
                with contextlib.suppress(OSError):
                    self.send_body(200, path.read_bytes(), "video/mp4")
            else:
                self.send_json(404, {"error": "not found"})

    return Handler


def serve_stock(folder: Path, videos: list[StockVideo], key: str) -> StockServer:
    """Both APIs and the files on a free loopback port, for the duration of a `with` block."""
    return StockServer(folder, videos, key)

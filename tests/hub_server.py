"""A Hugging Face hub stand-in on 127.0.0.1: serves model repositories from local folders, for download tests.

`serve_hub({"org/name": folder})` yields the base URL of a threaded
`http.server` to put in `HF_ENDPOINT`. It answers the two kinds of request
that `huggingface_hub` makes to fetch a repository: the repository's metadata
(`/api/models/{repo}/revision/{rev}`: its commit and file list;
`/api/models/{repo}/tree/{rev}`: its files with sizes) and its files (`/{repo}/resolve/{rev}/{file}`, HEAD and GET, with
the commit and ETag headers the client reads). Anything else is a 404, which
the client reports as a missing repository or file. Every request path is
recorded in `requests` so tests can tell a download from a cache hit. The
file list announces each file's size and hash as the real hub does (LFS
files, here `.bin` and `.safetensors`: their sha256; others: their git blob
id); `lie` serves other bytes than announced for a file and `endless` a body
that never ends, for the tests of the downloader's checks. It stands in for
the internet in tests; it is not a mock of any library.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.requests: list[str] = []
        self.lie: dict[str, bytes] = {}
        """File name -> the bytes served instead of the announced ones."""
        self.endless: set[str] = set()
        """File names whose body never ends (no Content-Length, bytes until the client hangs up)."""

    def file(self, repo: str, name: str) -> Path | None:
        folder = self.repos.get(repo)
        if folder is None:
            return None
        path = (folder / name).resolve()
        return path if path.is_file() and folder.resolve() in path.parents else None

    def info(self, repo: str) -> dict | None:
        folder = self.repos.get(repo)
        if folder is None:
            return None
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        return {"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                "siblings": [_sibling(name, (folder / name).read_bytes()) for name in files]}


    def tree(self, repo: str) -> list[dict] | None:
        folder = self.repos.get(repo)
        if folder is None:
            return None
        return [{"type": "file", "path": p.relative_to(folder).as_posix(), "size": p.stat().st_size,
                 "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                for p in sorted(folder.rglob("*")) if p.is_file()]


def _sibling(name: str, data: bytes) -> dict:
    """A file as the hub lists it with `blobs=true`: size and git blob id, plus sha256 for an LFS file."""
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    if name.endswith((".bin", ".safetensors")):
        return {"rfilename": name, "size": len(data), "blobId": git_sha1,
                "lfs": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}}
    return {"rfilename": name, "size": len(data), "blobId": git_sha1}


def _handler(hub: Hub):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = urllib.parse.urlparse(self.path).path
            hub.requests.append(f"{self.command} {path}")
            if path.startswith("/api/models/"):
                repo, _, tree = path.removeprefix("/api/models/").split("/revision/")[0].partition("/tree/")
                info = hub.info(repo) if not tree else hub.tree(repo)
                if info is None:
                    return self._not_found("RepoNotFound")
                data = json.dumps(info).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
                return
            repo, sep, rest = path.lstrip("/").partition("/resolve/")
            if not sep:
                return self._not_found("EntryNotFound")
            name = rest.partition("/")[2]
            file = hub.file(repo, name)
            if file is None:
                return self._not_found("EntryNotFound" if repo in hub.repos else "RepoNotFound")
            if name in hub.endless and body:
                return self._endless()
            data = hub.lie.get(name, file.read_bytes())
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _endless(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _not_found(self, code: str) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextlib.contextmanager
def serve_hub(repos: dict[str, Path]) -> Iterator[tuple[str, Hub]]:
    hub = Hub(repos)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

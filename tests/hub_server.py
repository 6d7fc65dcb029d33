"""A Hugging Face hub stand-in on 127.0.0.1: serves model repositories from local folders, for download tests.

`serve_hub({"org/name": folder})` yields the base URL of a threaded
`http.server` to put in `HF_ENDPOINT`. It answers the two kinds of request
that `huggingface_hub` makes to fetch a repository: the repository's metadata
(`/api/models/{repo}/revision/{rev}`: its commit and file list;
`/api/models/{repo}/tree/{rev}`: its files with sizes) and its files (`/{repo}/resolve/{rev}/{file}`, HEAD and GET, with
the commit and ETag headers the client reads). Anything else is a 404, which
the client reports as a missing repository or file. Every request path is
recorded in `requests` so tests can tell a download from a cache hit. It
stands in for the internet in tests; it is not a mock of any library.
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
                "siblings": [{"rfilename": name} for name in files]}


    def tree(self, repo: str) -> list[dict] | None:
        folder = self.repos.get(repo)
        if folder is None:
            return None
        return [{"type": "file", "path": p.relative_to(folder).as_posix(), "size": p.stat().st_size,
                 "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                for p in sorted(folder.rglob("*")) if p.is_file()]


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
            data = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if body:
                self.wfile.write(data)

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

"""What the local server lets in before any route runs: its own Host names, its own origin, JSON bodies of sane size.

Responsible for: refusing a request whose `Host` is not a name the server is
bound to (421: DNS rebinding), whose `Origin` is neither the server's own nor
one given with `serve --cors` (403: a web page on another site), whose body is
not JSON on an API endpoint (415: the "simple" cross-site POST a browser sends
without asking first), or whose body is larger than `BODY_LIMIT` (413). The
body is read once here, up to the limit, and handed on to the route. What a
body means is `serve.requests`' business; the token is `serve.app`'s.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable

import psutil

from aishorts.ipc.sizes import MiB

BODY_LIMIT = MiB
"""The largest request body any endpoint takes (a script of text is a few KB), but the upload endpoint."""
UPLOAD_PATH = "/api/v1/uploads"
"""The one endpoint whose body is a file: audio, video, image or octet-stream, streamed to its route (which counts
it against `serve.uploads.UPLOAD_LIMIT`), never JSON and never read here."""

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "localhost.localdomain")
WILDCARDS = ("0.0.0.0", "::", "")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a request may carry: loopback names, the address bound, names given with --allow-host.

    Bound to every address (0.0.0.0 or ::), the machine's own names and addresses count as bound too.
    """
    names = {*LOOPBACK_NAMES, bound, *extra}
    if bound in WILDCARDS:
        names |= {socket.gethostname(), socket.getfqdn()}
        names |= {addr.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for addr in addrs
                  if addr.family in (socket.AF_INET, socket.AF_INET6)}
    return frozenset(name.lower() for name in names if name)


def host_name(header: str) -> str:
    """`example.org:8765` -> `example.org`; `[::1]:8765` -> `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") > 1:  # a bare IPv6 address, no port
        return header
    return header.rsplit(":", 1)[0] if ":" in header else header


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestGuard:
    """ASGI middleware: Host, Origin, Content-Type and body size, checked in that order, before anything else."""

    def __init__(self, app, hosts: frozenset[str], cors: Iterable[str] = (), body_limit: int = BODY_LIMIT) -> None:
        self.app = app
        self.hosts = hosts
        self.cors = frozenset(origin.rstrip("/").lower() for origin in cors)
        self.body_limit = body_limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            return await _refuse(send, *refusal)
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        if scope["path"] == UPLOAD_PATH:
            return await self.pass_upload(scope, receive, send, headers)
        body, refusal = await self.read_body(receive, headers)
        if refusal is None and body.strip() and "content-type" not in headers and scope["path"].startswith("/api/"):
            refusal = 415, "content-type", "a body without a Content-Type: the API takes application/json only"
        if refusal is not None:
            return await _refuse(send, *refusal)
        await self.app(scope, _replay(body, receive), send)

    def refusal(self, scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host")
        if not host:
            return 400, "host", "a request needs a Host header naming this server"
        if host_name(host) not in self.hosts:
            return 421, "host", (f"Host {host!r} is not a name this server answers to (a web page on another site"
                                 " may be trying to reach it); start it with --allow-host NAME to add one")
        origin = headers.get("origin")
        if origin is not None and not self.own_origin(origin, host):
            return 403, "origin", (f"requests from {origin!r} are refused: only this server's own page may call"
                                   " its API; start it with --cors ORIGIN to allow another")
        if scope["type"] == "http" and scope["method"] in BODY_METHODS and scope["path"] == UPLOAD_PATH:
            return _upload_type_refusal(headers.get("content-type"))
        if scope["type"] == "http" and scope["method"] in BODY_METHODS and scope["path"].startswith("/api/"):
            content_type = headers.get("content-type")
            if content_type is not None and not is_json(content_type):
                return 415, "content-type", (f"Content-Type {content_type!r}: the API takes JSON bodies only"
                                             " (Content-Type: application/json)")
        return None

    async def pass_upload(self, scope, receive, send, headers: dict[str, str]) -> None:
        """An upload goes to its route as it streams; one that declares more than the route takes is refused now."""
        from aishorts.serve.uploads import UPLOAD_LIMIT

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > UPLOAD_LIMIT:
            return await _refuse(send, 413, "body", f"the file is over {UPLOAD_LIMIT >> 20} MiB; send a smaller one")
        await self.app(scope, receive, send)

    def own_origin(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        return origin == f"http://{host.strip().lower()}" or origin in self.cors

    async def read_body(self, receive, headers: dict[str, str]) -> tuple[bytes, tuple[int, str, str] | None]:
        too_big = (413, "body", f"the request body is over {self.body_limit // 1024} KiB; send less")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.body_limit:
            return b"", too_big
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                return b"", too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), None


def _upload_type_refusal(content_type: str | None) -> tuple[int, str, str] | None:
    from aishorts.serve.uploads import is_upload_type

    if content_type is not None and is_upload_type(content_type):
        return None
    return 415, "content-type", (f"Content-Type {content_type!r}: an upload is the file itself, sent as"
                                 " application/octet-stream or its audio/, video/ or image/ type")


def _headers(scope) -> dict[str, str]:
    """The request's headers by lower-case name; a header given twice keeps its first value."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send, status: int, field: str, reason: str) -> None:
    payload = json.dumps({"status": status, "message": reason, "data": None, "field": field,
                          "detail": [{"field": field, "reason": reason}]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


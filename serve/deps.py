"""What every route reaches through FastAPI's `Depends`: the server's job manager, settings and event hub (kept on
`app.state` by `serve.app`), the address clients reached it at; and the answer's envelope.

Responsible for: those lookups, for the `serve.routes_*` modules (one `APIRouter` per concern), and the shared
shape of an answer (MoneyPrinterTurbo's `status`, `message`, `data`) and of a documented request body. Not for:
any route itself.
"""
from __future__ import annotations

import re
from typing import Annotated

import msgspec
from fastapi import Depends, Request, Response

from aishorts.serve.jobs import JobManager
from aishorts.serve.live import EventHub
from aishorts.serve.requests import ServerSettings

# Each lookup is `async`: FastAPI runs it on the event loop, where a plain `def` would cost a thread hop per request.


async def manager_of(request: Request) -> JobManager:
    return request.app.state.manager


async def settings_of(request: Request) -> ServerSettings:
    return request.app.state.settings


async def hub_of(request: Request) -> EventHub:
    return request.app.state.hub


async def address_of(request: Request) -> str:
    """The address clients reached the server at (`base_url`), with the app's `trust_proxy` setting."""
    return base_url(request, request.app.state.trust_proxy)


Manager = Annotated[JobManager, Depends(manager_of)]
Settings = Annotated[ServerSettings, Depends(settings_of)]
Hub = Annotated[EventHub, Depends(hub_of)]
BaseUrl = Annotated[str, Depends(address_of)]


def base_url(request: Request, trust_proxy: bool) -> str:
    """The address clients reached the server at, for absolute URLs: scheme, host and any path prefix.

    Behind a reverse proxy (`serve --trust-proxy`) it is the proxy's, from `X-Forwarded-Proto`, `-Host` and
    `-Prefix`; otherwise those headers are never believed (any client could set them) and the request's own
    Host (already checked against the names the server answers to) is used.
    """
    own = str(request.base_url).rstrip("/")
    if not trust_proxy:
        return own
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    host = headers.get("x-forwarded-host", "").split(",")[0].strip()
    prefix = headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
    if scheme not in ("http", "https"):
        scheme = request.url.scheme
    if not host or any(c in host for c in "/\\ @?#"):
        host = request.headers.get("host", request.url.netloc)
    if not re.fullmatch(r"(/[\w.~-]+)*", prefix):
        prefix = ""
    return f"{scheme}://{host}{prefix}"


def ok(data: object) -> Response:
    return Response(msgspec.json.encode({"status": 200, "message": "success", "data": data}),
                    media_type="application/json")


def body_doc(kind: type, required: bool = True) -> dict:
    """The OpenAPI request body of a msgspec Struct, its nested definitions inlined (so /docs can show it)."""
    schema = msgspec.json.schema(kind)
    definitions = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": required, "content": {"application/json": {"schema": inline(schema)}}}}

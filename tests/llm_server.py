"""A real OpenAI-compatible chat server on 127.0.0.1 for tests: scripted replies, recorded requests.

`ChatServer([reply, ...])` answers each POST to `/v1/chat/completions` with
the next reply in its list (the last one repeats once the list is used up)
and records every request body and its headers, so tests can check both what
the backend sent and how it coped with what it got back. It binds 127.0.0.1
unless given another loopback address (`host="127.0.0.2"`: a second host for
redirect tests), and records GETs too: what urllib sends after a 302.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.loopback import LoopbackServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def chat(text: str) -> Reply:
    """A well-formed chat completion whose one choice says `text`."""
    payload = {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())},
    }
    return Reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def raw(status: int, body: bytes | str, headers: dict[str, str] | None = None, delay_s: float = 0.0) -> Reply:
    data = body.encode() if isinstance(body, str) else body
    return Reply(status, data, headers or {"Content-Type": "application/json"}, delay_s)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict

    def text(self) -> str:
        """Every message's content, joined: what the model was asked."""
        return "\n".join(m.get("content", "") for m in self.body.get("messages", []))


class ChatServer(LoopbackServer):
    def __init__(self, replies: list[Reply], host: str = "127.0.0.1") -> None:
        if not host.startswith("127."):
            raise ValueError("tests serve on loopback addresses only")
        if not replies:
            raise ValueError("give at least one reply")
        self.replies = list(replies)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        super().__init__(host)

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def _next(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                try:
                    body = json.loads(data)
                except ValueError:
                    body = {"unparsed": data.decode("utf-8", "replace")}
                reply = server._next(Seen(self.path, dict(self.headers.items()), body))
                if self.path != "/v1/chat/completions":
                    reply = raw(404, '{"error": {"message": "no such route"}}')
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST  # noqa: N815 (a followed 302 arrives as a GET without a body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"

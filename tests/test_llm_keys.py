"""Each API key goes to the provider that issued it, and an endpoint that never stops answering is stopped.

Where a request for openrouter.ai or api.openai.com goes is seen through a real
HTTP proxy on 127.0.0.1 (urllib honours `HTTPS_PROXY`): it records the host of
each `CONNECT` and refuses it, so nothing leaves this machine. Endless or
trickling answers come from real loopback servers.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from aishorts.ipc.params import LlmParams
from llm_server import ChatServer, chat
from aishorts.stages.common.context import StageError
from aishorts.stages.llm.chat import OpenAIChat
from aishorts.stages.llm.endpoints import find_endpoint
from tests.loopback import LoopbackServer, QuietHandler
from tests.runner_helpers import balloon_pipeline, run_cli

ASK = [{"role": "user", "content": "Say hello."}]


class ConnectRecorder(LoopbackServer):
    """An HTTP proxy that records the `host:port` of every CONNECT and answers 403 (nothing is forwarded)."""

    def __init__(self) -> None:
        self.connects: list[str] = []
        super().__init__()

    def _handler(self) -> type[QuietHandler]:
        outer = self

        class Handler(QuietHandler):
            def do_CONNECT(self) -> None:  # noqa: N802
                outer.connects.append(self.path)
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


@pytest.fixture
def proxy(monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "OPENAI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with ConnectRecorder() as recorder:
        monkeypatch.setenv("HTTPS_PROXY", recorder.root)
        monkeypatch.setenv("https_proxy", recorder.root)
        yield recorder


@pytest.mark.parametrize(("key_env", "key", "params", "host"), [
    ("OPENAI_API_KEY", "sk-openai-only", LlmParams(backend="openai", model="gpt-4o-mini"), "api.openai.com"),
    ("OPENROUTER_API_KEY", "sk-or-key", LlmParams(backend="openai"), "openrouter.ai"),
], ids=["openai_key_alone_to_api.openai.com_never_openrouter", "openrouter_key_to_openrouter"])
def test_a_key_goes_to_the_provider_that_issued_it(proxy, monkeypatch, key_env, key, params, host):
    monkeypatch.setenv(key_env, key)
    backend = OpenAIChat.from_params(params)
    assert backend.url.startswith(f"https://{host}/") and backend.api_key == key
    with pytest.raises(StageError):
        backend.complete(ASK, max_tokens=5, temperature=0.0, seed=1)
    assert proxy.connects == [f"{host}:443"]


def test_a_key_variable_of_unknown_issuer_needs_the_endpoint_named(proxy, monkeypatch):
    monkeypatch.setenv("MY_COMPANY_KEY", "secret")
    with pytest.raises(StageError, match="--llm-url"):
        OpenAIChat.from_params(LlmParams(backend="openai", model="m", api_key_env="MY_COMPANY_KEY"))
    assert proxy.connects == []


def test_an_endpoint_named_with_llm_url_gets_the_key_the_user_chose(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-my-proxy")
    with ChatServer([chat("hello")]) as server:
        backend = OpenAIChat.from_params(LlmParams(backend="openai", base_url=server.url, model="m"))
        assert backend.complete(ASK, max_tokens=5, temperature=0.0, seed=1) == "hello"
    assert server.requests[0].headers["Authorization"] == "Bearer sk-for-my-proxy"


def test_a_run_json_edited_to_the_online_backend_is_refused_on_resume(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5}})
    run_dir = tmp_path / "run"
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--llm", "local", cwd=tmp_path).returncode == 0
    manifest = json.loads((run_dir / "run.json").read_text())
    for stage in ("theme", "script"):
        manifest["params"][stage]["llm"]["backend"] = "openai"
    (run_dir / "run.json").write_text(json.dumps(manifest))

    refused = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    assert refused.returncode == 2 and "--llm: " in refused.stderr and "names the online backend openai" in refused.stderr, \
        refused.stderr
    assert run_cli("--pipeline", pipeline, "--run-dir", run_dir, "--llm", "openai", cwd=tmp_path).returncode == 0


class EndlessAnswer(LoopbackServer):
    """A chat endpoint on 127.0.0.1 that answers 200 and then sends `chunk` every `pause_s`, forever."""

    def __init__(self, chunk: bytes, pause_s: float) -> None:
        self.chunk = chunk
        self.pause_s = pause_s
        self.sent = 0
        super().__init__()

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def _handler(self) -> type[QuietHandler]:
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    self.wfile.write(b'{"choices": [{"message": {"content": "')
                    while True:
                        self.wfile.write(outer.chunk)
                        outer.sent += len(outer.chunk)
                        time.sleep(outer.pause_s)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    pass

        return Handler


def test_an_answer_that_never_ends_is_cut_at_a_size_and_named(monkeypatch):
    with EndlessAnswer(b"x" * 65536, 0.0) as server:
        backend = OpenAIChat.from_params(LlmParams(backend="openai", base_url=server.url, model="m", timeout_s=30))
        with pytest.raises(StageError) as stopped:
            backend.complete(ASK, max_tokens=5, temperature=0.0, seed=1)
    message = str(stopped.value)
    assert server.url in message and "MiB" in message and "memory" not in message
    assert server.sent < 64 * 1024 * 1024


def test_an_answer_that_trickles_forever_is_stopped_in_time(monkeypatch):
    with EndlessAnswer(b"x", 0.05) as server:
        backend = OpenAIChat.from_params(LlmParams(backend="openai", base_url=server.url, model="m", timeout_s=1))
        started = time.monotonic()
        with pytest.raises(StageError) as stopped:
            backend.complete(ASK, max_tokens=5, temperature=0.0, seed=1)
    assert time.monotonic() - started < 10
    assert server.url in str(stopped.value) and "still sending" in str(stopped.value)


class Redirecting(LoopbackServer):
    """Every GET is answered 302 to `location`."""

    def __init__(self, location: str) -> None:
        self.location = location
        super().__init__()

    def _handler(self) -> type[QuietHandler]:
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(302)
                self.send_header("Location", outer.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def test_the_auto_probe_does_not_follow_a_redirect_to_another_host(monkeypatch):
    with ChatServer([chat("x")], host="127.0.0.2") as elsewhere:
        models = json.dumps({"data": [{"id": "elsewhere-model"}]})
        with Redirecting(f"{elsewhere.url}/models") as redirecting:
            monkeypatch.setenv("AISHORTS_LLAMACPP_URL", redirecting.root)
            monkeypatch.setenv("OLLAMA_HOST", redirecting.root.removeprefix("http://"))
            assert find_endpoint() is None
    assert elsewhere.requests == [], models

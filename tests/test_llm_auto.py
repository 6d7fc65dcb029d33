"""`--llm auto`: the user's own LLM is found (key, Ollama, llama.cpp server) before the shipped local model.

The servers are real HTTP servers on loopback ports, standing in for Ollama
and llama.cpp's server; keyed services are checked by what would be called
(no request leaves this machine).
"""

from __future__ import annotations

import json

import pytest

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.params import LlmParams, ScriptParams
from aishorts.stages.llm.chat import OpenAIChat, open_backend
from aishorts.stages.llm.endpoints import find_endpoint, pick_ollama_model
from tests.loopback import LoopbackServer, QuietHandler

SCRIPT = "\n".join([
    "An octopus has three hearts, and two of them take breaks.",
    "Two small hearts push blood through the gills, where it picks up oxygen.",
    "The third heart sends that blood around the rest of the body.",
    "Octopus blood is blue, because it carries oxygen with copper instead of iron.",
    "That copper works well in cold water, but it is not very efficient.",
    "So the main heart needs help from the two smaller ones.",
    "When an octopus swims, the main heart simply stops beating.",
    "That is why octopuses prefer to crawl along the sea floor.",
    "Swimming tires them out fast, so they save it for escapes.",
    "Next time you see an octopus crawling, you will know why.",
    "Follow for more strange facts about the ocean.",
])


class FakeServer(LoopbackServer):
    """GET paths answer fixed JSON; POST /v1/chat/completions answers SCRIPT and records the model asked for."""

    def __init__(self, gets: dict[str, object]) -> None:
        self.gets = gets
        self.asked: list[str] = []
        super().__init__()

    @property
    def address(self) -> str:
        return self.root.removeprefix("http://")

    def _handler(self) -> type[QuietHandler]:
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                gets = outer.gets
                self.send_json(200, gets[self.path]) if self.path in gets else self.send_json(404, {"error": "no"})

            def do_POST(self) -> None:  # noqa: N802
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.asked.append(request["model"])
                self.send_json(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": SCRIPT}}]})

        return Handler


@pytest.fixture
def nothing_around(monkeypatch):
    """No key in the environment, no Ollama, no llama.cpp server (conftest's autouse fixture sees to that)."""
    return monkeypatch


def test_with_nothing_around_the_local_model_writes(nothing_around):
    assert find_endpoint() is None


def test_an_openrouter_key_comes_before_an_openai_key(nothing_around):
    nothing_around.setenv("OPENAI_API_KEY", "sk-openai")
    found = find_endpoint()
    assert (found.base_url, found.key_env, found.model) == ("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini")
    nothing_around.setenv("OPENROUTER_API_KEY", "sk-or")
    found = find_endpoint("meta-llama/llama-3.3-70b-instruct")
    assert found.base_url == "https://openrouter.ai/api/v1" and found.key_env == "OPENROUTER_API_KEY"
    assert found.model == "meta-llama/llama-3.3-70b-instruct" and "OPENROUTER_API_KEY" in found.why


def test_ollama_on_this_machine_is_found_and_asked_for_an_instruct_model(nothing_around, run_stage_inline, tmp_path):
    tags = {"models": [{"name": "nomic-embed-text:latest"}, {"name": "qwen2.5:7b-instruct"}]}
    with FakeServer({"/api/tags": tags}) as ollama:
        nothing_around.setenv("OLLAMA_HOST", ollama.address)
        theme = Theme(topic="Why octopuses have three hearts", angle="", keywords=[])
        script, events = run_stage_inline(tmp_path, "script", ScriptParams(llm=LlmParams(backend="auto")), theme=theme)
    assert ollama.asked == ["qwen2.5:7b-instruct"]
    assert script.backend == "openai:qwen2.5:7b-instruct"
    assert script.backend_reason.startswith("--llm auto: Ollama answers at")
    assert any("--llm auto chose openai" in e.message and "Ollama" in e.message for e in events)


def test_a_llama_cpp_server_is_found_when_there_is_no_ollama(nothing_around):
    with FakeServer({"/v1/models": {"data": [{"id": "my-model.gguf"}]}}) as server:
        nothing_around.setenv("AISHORTS_LLAMACPP_URL", f"http://{server.address}")
        backend = open_backend(LlmParams(backend="auto"))
        assert isinstance(backend, OpenAIChat)
        assert backend.label == "openai:my-model.gguf"
        assert backend.complete([{"role": "user", "content": "hi"}], max_tokens=5, temperature=0, seed=1) == SCRIPT
    assert server.asked == ["my-model.gguf"]


def test_ollama_models_are_picked_by_family_else_the_first():
    assert pick_ollama_model(["phi3:mini", "llama3.2:3b"]) == "llama3.2:3b"
    assert pick_ollama_model(["mystery:1b", "other:2b"]) == "mystery:1b"


def test_probes_never_leave_this_machine(nothing_around):
    nothing_around.setenv("OLLAMA_HOST", "192.0.2.1:11434")  # a documentation address: must not even be tried
    nothing_around.setenv("AISHORTS_LLAMACPP_URL", "http://192.0.2.1:8080")
    assert find_endpoint() is None

"""What the theme and script stage tests share: the octopus theme they write about, and the LLM parameters that
point a stage at a loopback chat server (tests/llm_server.py). Not for: the answers themselves, which stay with
the tests that say what they are for (GOOD_SCRIPT, TRUE_BODY)."""

from __future__ import annotations

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.params import LlmParams
from llm_server import ChatServer

THEME = Theme(topic="Why octopuses have three hearts", angle="", keywords=["octopuses", "three", "hearts"])


def llm(server: ChatServer, **extra) -> LlmParams:
    """The OpenAI-compatible backend at `server`, with a key variable nobody sets (so no key is ever sent)."""
    return LlmParams(backend="openai", base_url=server.url, model="test-model", api_key_env="AISHORTS_NO_SUCH_KEY",
                     timeout_s=5.0, **extra)

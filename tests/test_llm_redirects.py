"""The OpenAI-compatible backend never hands its API key to a host other than the configured one.

Two real chat servers on two loopback addresses (127.0.0.1 and 127.0.0.2): the
configured one answers with a redirect, and the other records whatever reaches
it. A redirect to another host is refused with both hosts named; one on the
same host is followed with the key.
"""

from __future__ import annotations

import pytest

from aishorts.ipc.params import LlmParams
from llm_server import ChatServer, chat, raw
from aishorts.stages.common.context import StageError
from aishorts.stages.llm.chat import OpenAIChat

ASK = [{"role": "user", "content": "Say hello."}]
KEY_ENV = "AISHORTS_TEST_LLM_KEY"
KEY = "sk-secret-never-elsewhere"


def complete(url: str) -> str:
    backend = OpenAIChat.from_params(LlmParams(backend="openai", base_url=url, model="m", api_key_env=KEY_ENV,
                                               timeout_s=5.0))
    return backend.complete(ASK, max_tokens=20, temperature=0.0, seed=1)


def redirect_to(location: str, status: int = 302):
    return raw(status, "", {"Location": location})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_refused_and_that_host_never_sees_the_key(monkeypatch, status):
    monkeypatch.setenv(KEY_ENV, KEY)
    with ChatServer([chat("stolen")], host="127.0.0.2") as elsewhere:
        with ChatServer([redirect_to(f"{elsewhere.url}/chat/completions", status)]) as configured:
            with pytest.raises(StageError) as refused:
                complete(configured.url)
    message = str(refused.value)
    assert "127.0.0.1" in message and "127.0.0.2" in message and "redirect" in message
    assert configured.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert not any("Authorization" in seen.headers for seen in elsewhere.requests)
    assert elsewhere.requests == []


def test_a_redirect_to_another_port_of_the_same_address_is_refused_too(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with ChatServer([chat("stolen")]) as other_port:
        with ChatServer([redirect_to(f"{other_port.url}/chat/completions")]) as configured:
            with pytest.raises(StageError, match="redirect"):
                complete(configured.url)
    assert other_port.requests == []


def test_a_redirect_on_the_same_host_is_followed_with_the_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with ChatServer([redirect_to("/v1/chat/completions"), chat("same host")]) as configured:
        assert complete(configured.url) == "same host"
    assert len(configured.requests) == 2
    assert all(seen.headers["Authorization"] == f"Bearer {KEY}" for seen in configured.requests)

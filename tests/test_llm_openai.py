"""The OpenAI-compatible LLM backend against a real HTTP server on 127.0.0.1.

What it sends, what it accepts, and how each way an endpoint can fail becomes
one clear StageError: down, not JSON, JSON that is no chat completion, keys
refused, rate limits and server errors (retried a bounded number of times),
and answers that never come.
"""

from __future__ import annotations

import time

import pytest

from aishorts.ipc.params import LlmParams
from llm_server import ChatServer, chat, closed_port_url, raw
from aishorts.stages.common.context import StageError
from aishorts.stages.llm.chat import HTTP_ATTEMPTS, RETRY_AFTER_CAP_S, OpenAIChat, open_backend, retry_pause

ASK = [{"role": "user", "content": "Say hello."}]
KEY_ENV = "AISHORTS_TEST_LLM_KEY"


def backend_for(url: str, **extra) -> OpenAIChat:
    return OpenAIChat.from_params(LlmParams(
        backend="openai", base_url=url, model="test-model", api_key_env=KEY_ENV, timeout_s=extra.pop("timeout_s", 5.0),
        **extra,
    ))


def complete(backend: OpenAIChat) -> str:
    return backend.complete(ASK, max_tokens=50, temperature=0.2, seed=7)


def test_a_good_answer_returns_the_first_choice_text_and_sends_a_chat_completion_request(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    with ChatServer([chat("Hello there.")]) as server:
        assert complete(backend_for(server.url + "/")) == "Hello there."
    [seen] = server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer sk-test-123"
    assert seen.body["model"] == "test-model"
    assert seen.body["messages"] == ASK
    assert seen.body["max_tokens"] == 50 and seen.body["seed"] == 7 and seen.body["stream"] is False


def test_no_key_in_the_environment_sends_no_authorization_header(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with ChatServer([chat("ok")]) as server:
        assert complete(backend_for(server.url)) == "ok"
    assert "Authorization" not in server.requests[0].headers


def test_open_backend_picks_the_openai_backend_without_loading_any_model():
    backend = open_backend(LlmParams(backend="openai", base_url="http://127.0.0.1:9/v1", model="m"))
    assert isinstance(backend, OpenAIChat)
    assert backend.label == "openai:m" and backend.follows_length_requests


def test_an_answer_that_is_not_json_is_a_clear_error():
    with ChatServer([raw(200, "<html><body>Welcome to nginx!</body></html>", {"Content-Type": "text/html"})]) as server:
        with pytest.raises(StageError, match="not JSON.*nginx"):
            complete(backend_for(server.url))
    assert len(server.requests) == 1


def test_json_without_choices_is_a_clear_error():
    with ChatServer([raw(200, '{"id": "x", "object": "list", "data": []}')]) as server:
        with pytest.raises(StageError, match="without any choices"):
            complete(backend_for(server.url))


def test_a_choice_without_text_content_is_a_clear_error():
    with ChatServer([raw(200, '{"choices": [{"message": {"role": "assistant", "content": null}}]}')]) as server:
        with pytest.raises(StageError, match="without text content"):
            complete(backend_for(server.url))


def test_an_error_object_in_a_200_answer_is_reported():
    with ChatServer([raw(200, '{"error": {"message": "model overloaded"}}')]) as server:
        with pytest.raises(StageError, match="model overloaded"):
            complete(backend_for(server.url))


def test_rate_limited_then_answered_waits_as_asked_and_succeeds():
    with ChatServer([raw(429, '{"error": "slow down"}', {"Retry-After": "1"}), chat("after the wait")]) as server:
        start = time.monotonic()
        assert complete(backend_for(server.url)) == "after the wait"
        waited = time.monotonic() - start
    assert len(server.requests) == 2
    assert waited >= 0.9


def test_a_server_error_that_persists_is_retried_a_bounded_number_of_times_then_reported():
    with ChatServer([raw(500, '{"error": "upstream exploded"}')]) as server:
        start = time.monotonic()
        expected = rf"kept failing: HTTP 500 after {HTTP_ATTEMPTS} attempts.*upstream exploded"
        with pytest.raises(StageError, match=expected):
            complete(backend_for(server.url))
        elapsed = time.monotonic() - start
    assert len(server.requests) == HTTP_ATTEMPTS
    assert elapsed < 30


def test_a_transient_server_error_is_retried():
    now = {"Retry-After": "0"}
    with ChatServer([raw(503, "busy", now), raw(502, "bad gateway", now), chat("up again")]) as server:
        assert complete(backend_for(server.url)) == "up again"
    assert len(server.requests) == 3


def test_a_refused_key_names_the_environment_variable_and_is_not_retried(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with ChatServer([raw(401, '{"error": {"message": "invalid api key"}}')]) as server:
        with pytest.raises(StageError, match=rf"refused the API key \(HTTP 401\); \${KEY_ENV} is not set"):
            complete(backend_for(server.url))
    assert len(server.requests) == 1


def test_a_wrong_path_says_to_check_the_url():
    with ChatServer([chat("never seen")]) as server:
        with pytest.raises(StageError, match="HTTP 404: check --llm-url"):
            complete(backend_for(server.url.removesuffix("/v1") + "/wrong"))


def test_an_endpoint_that_is_down_is_a_clear_error_without_waiting():
    start = time.monotonic()
    with pytest.raises(StageError, match="cannot reach the LLM endpoint .* is the server running"):
        complete(backend_for(closed_port_url()))
    assert time.monotonic() - start < 5


def test_an_answer_slower_than_the_timeout_is_a_clear_error():
    with ChatServer([chat("too late")]) as server:
        server.replies[0].delay_s = 3.0
        with pytest.raises(StageError, match="did not answer within 0.5 s"):
            complete(backend_for(server.url, timeout_s=0.5))


def test_settings_that_cannot_work_are_refused_before_any_request():
    with pytest.raises(StageError, match="needs a model name"):
        OpenAIChat("http://127.0.0.1:1/v1", "  ")
    with pytest.raises(StageError, match="must start with http"):
        OpenAIChat("127.0.0.1:1/v1", "m")


def test_retry_pauses_honour_retry_after_but_never_wait_long():
    assert retry_pause("2", attempt=1) == 2.0
    assert retry_pause("3600", attempt=1) == RETRY_AFTER_CAP_S
    assert retry_pause(None, attempt=1, backoff_s=0.5) == 0.5
    assert retry_pause(None, attempt=3, backoff_s=0.5) == 2.0
    assert retry_pause(None, attempt=10, backoff_s=0.5) == RETRY_AFTER_CAP_S
    assert retry_pause("Wed, 21 Oct 2015 07:28:00 GMT", attempt=1) == 0.0
    assert retry_pause("not a number", attempt=2, backoff_s=0.5) == 1.0

"""The chat LLM backends shared by the theme and script stages.

`open_backend(params)` gives the `ChatBackend` that `BACKENDS` registers under
`params.backend`, opened (loaded) and ready for `complete`: chat messages in,
the assistant's text out. Two backends:

- `LocalGguf`: the strongest local GGUF model that is installed and fits the
  stage's memory ceiling (stages/llm/local_models.py: Qwen2.5-Coder-1.5B-Instruct,
  SmolLM2-135M-Instruct), run quantised in this process by llama.cpp through
  xllamacpp's prebuilt wheel.
- `OpenAIChat`: any OpenAI-compatible `/chat/completions` endpoint over the
  standard library's urllib, with bounded retries on 429 and 5xx; redirects
  are followed on the endpoint's host only (stages/common/redirects.py), so the API
  key never reaches another.

Every failure a user can fix (endpoint down, bad key, garbage answers, model
file missing) is a `StageError`. This module does not judge what the model
wrote: prompts, cleaning and validation belong to the stages.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import msgspec

from aishorts.ipc.params import LlmParams
from aishorts.ipc.sizes import MiB
from aishorts.stages.common.http import is_loopback
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.redirects import SameHostRedirects
from aishorts.stages.common.runtime import lockstep_threads, others_running, thread_share
from aishorts.stages.llm import local_models
from aishorts.stages.llm.endpoints import KEYED_SERVICES, find_endpoint, keyed_endpoint
from aishorts.stages.llm.local_models import LocalModel

Message = dict[str, str]

LOCAL_MAX_NEW_TOKENS = 160
"""Hard cap per call for a model that ignores length requests: the 135M model rambles."""
LOCAL_CONTEXT_TOKENS = 2048
SPECULATIVE_NGRAM: tuple[int, int] | None = (3, 6)
"""llama.cpp's n-gram speculation (no draft model): wherever the answer's last 3 tokens occurred before in the
conversation, the 6 that followed them are checked in one batch. A script retold from the source's facts repeats
their words: 58-68% of the drafted tokens were kept, and `python -m tools.bench_grounded --modes grounded
--speculation both` gave grounded script stages at 0.91 of the time without it (median of 8 cases, 0.77-0.97;
6 of them: median 48.8 s against 55.2 s), every script the same as without. An ungrounded script gains
nothing (0.99, 4 cases) and 2 of its 4 came out different, as another seed's would (sampled tokens checked in a
batch need not match one by one). Drafts of 16 tokens kept 28% and were slower. None: off."""

HTTP_ATTEMPTS = 4
BACKOFF_S = 0.5
RETRY_AFTER_CAP_S = 5.0
"""A server asking for a longer pause than this is waited for only this long, then retried."""
ERROR_BODY_CHARS = 300
ANSWER_LIMIT = 4 * MiB
"""The largest chat answer read (one choice of a few hundred tokens is a few KB)."""
ANSWER_TIME_FACTOR = 2.0
"""An answer still arriving after this many times the timeout is abandoned (the timeout bounds each read only)."""


class ChatBackend(Protocol):
    label: str
    """What produced the text, e.g. `local:SmolLM2-135M-Instruct` or `openai:gpt-4o-mini`."""
    follows_length_requests: bool
    """False for tiny models that ignore "write 150 words": callers then generate in parts."""
    reason: str
    """Why this backend and model answer, for the artifact (set by `open_backend`)."""

    @classmethod
    def open(cls, params: LlmParams, ctx: StageContext | None = None, language: str = "en",
             from_source: bool = False) -> ChatBackend:
        """A backend configured from `params`, ready to answer; StageError if it cannot write `language` (retelling
        a source when `from_source`)."""
        ...

    def complete(
        self, messages: list[Message], *, max_tokens: int, temperature: float, seed: int, schema: dict | None = None,
    ) -> str:
        """`schema`: a JSON schema the answer should follow (llama.cpp's grammar, OpenAI's response_format)."""
        ...


def open_backend(params: LlmParams, ctx: StageContext | None = None, language: str = "en",
                 from_source: bool = False) -> ChatBackend:
    """The backend `params` names, ready to answer (the local model is loaded here).

    `auto` is a rule, not a backend: the user's own LLM when one is found
    (stages/llm/endpoints.py), else the local model; the log says which and why.
    """
    why = f"asked for with --llm {params.backend}"
    if params.backend == "auto":
        found = find_endpoint(params.model)
        if found is None:
            params = msgspec.structs.replace(params, backend="local")
            why = "--llm auto found no API key in the environment and no Ollama or llama.cpp server on this machine"
        else:
            params = msgspec.structs.replace(params, backend="openai", base_url=found.base_url, model=found.model,
                                             api_key_env=found.key_env)
            why = f"--llm auto: {found.why}"
        if ctx is not None:
            chosen = f"{params.backend} ({params.model})" if params.model else params.backend
            ctx.log(f"--llm auto chose {chosen}: {why}")
    backend = BACKENDS[params.backend].open(params, ctx, language, from_source)
    backend.reason = f"{why}; {backend.reason}" if backend.reason else why
    return backend


# --- OpenAI-compatible endpoint -------------------------------------------------------------


class OpenAIChat:
    """POST /chat/completions on an OpenAI-compatible server (OpenRouter, Ollama, llama.cpp server...)."""

    follows_length_requests = True
    reason = ""
    schema_refused = False
    """The server refused `response_format` once: answers are asked for without it."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, key_env: str = "",
        timeout_s: float = 60.0, attempts: int = HTTP_ATTEMPTS, backoff_s: float = BACKOFF_S,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise StageError(f"LLM base URL {base_url!r} must start with http:// or https://")
        if not model.strip():
            raise StageError(
                "the openai LLM backend needs a model name (--llm-model, e.g. gpt-4o-mini or llama3.2)"
            )
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.key_env = key_env
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.label = f"openai:{model}"
        self._opener = _opener_for(self.url)

    @classmethod
    def open(cls, params: LlmParams, ctx: StageContext | None = None, language: str = "en",
             from_source: bool = False) -> OpenAIChat:
        return cls.from_params(params)

    @classmethod
    def from_params(cls, params: LlmParams) -> OpenAIChat:
        # No key is fine: local servers (Ollama, llama.cpp) do not ask for one.
        endpoint = keyed_endpoint(params)
        key = os.environ.get(endpoint.key_env) if endpoint.key_env else None
        return cls(
            endpoint.base_url, endpoint.model, api_key=key or None,
            key_env=endpoint.key_env or " or ".join(env for env, _, _ in KEYED_SERVICES), timeout_s=params.timeout_s,
        )

    def complete(
        self, messages: list[Message], *, max_tokens: int, temperature: float, seed: int, schema: dict | None = None,
    ) -> str:
        body = {
            "model": self.model, "messages": messages, "max_tokens": max_tokens,
            "temperature": temperature, "seed": seed, "stream": False,
        }
        if schema is not None and not self.schema_refused:
            shaped = {**body, "response_format": _response_format(schema)}
            try:
                return _answer_text(self._post(json.dumps(shaped).encode()), self.url)
            except RequestRefused:  # a server without structured output: ask in plain words from now on
                self.schema_refused = True
        return _answer_text(self._post(json.dumps(body).encode()), self.url)

    def _post(self, data: bytes) -> bytes:
        for attempt in range(1, self.attempts + 1):
            try:
                with self._opener.open(self._request(data), timeout=self.timeout_s) as response:
                    return self._read_answer(response)
            except urllib.error.HTTPError as exc:
                detail = _error_body(exc)
                if not _retryable(exc.code) or attempt == self.attempts:
                    raise self._http_error(exc.code, detail, attempt) from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                time.sleep(retry_pause(retry_after, attempt, self.backoff_s))
            except (urllib.error.URLError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    raise StageError(
                        f"LLM endpoint {self.url} did not answer within {self.timeout_s:g} s;"
                        " raise the LLM timeout or try a faster model"
                    ) from None
                raise StageError(
                    f"cannot reach the LLM endpoint {self.url} ({reason}); is the server running"
                    " and is --llm-url right?"
                ) from None
            except http.client.HTTPException as exc:
                raise StageError(f"LLM endpoint {self.url} sent a broken HTTP answer ({type(exc).__name__})") from None
            except TimeoutError:
                raise StageError(
                    f"LLM endpoint {self.url} did not answer within {self.timeout_s:g} s;"
                    " raise the LLM timeout or try a faster model"
                ) from None
        raise AssertionError("unreachable")

    def _read_answer(self, response) -> bytes:
        """The answer's body, at most ANSWER_LIMIT bytes and ANSWER_TIME_FACTOR times the timeout in all.

        A server that never stops sending (or trickles forever, each read inside the socket timeout) is stopped
        here with a StageError naming it, instead of growing the stage until its memory ceiling kills it.
        """
        deadline = time.monotonic() + self.timeout_s * ANSWER_TIME_FACTOR
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(64 * 1024):  # what has arrived: read() would wait for all 64 KB
            size += len(chunk)
            if size > ANSWER_LIMIT:
                raise StageError(f"LLM endpoint {self.url} sent more than {ANSWER_LIMIT // MiB} MiB and"
                                 " kept going; a chat answer is a few KB: is --llm-url an OpenAI-compatible API?")
            if time.monotonic() > deadline:
                raise StageError(f"LLM endpoint {self.url} was still sending its answer after"
                                 f" {self.timeout_s * ANSWER_TIME_FACTOR:g} s ({size} bytes so far); it was stopped")
            chunks.append(chunk)
        return b"".join(chunks)

    def _request(self, data: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.url, data=data, headers=headers, method="POST")


    def _http_error(self, code: int, detail: str, attempts: int) -> StageError:
        if code in (401, 403):
            where = f" (read from ${self.key_env})" if self.api_key else f"; ${self.key_env} is not set"
            return StageError(f"LLM endpoint {self.url} refused the API key (HTTP {code}){where}: {detail}")
        if code == 404:
            return StageError(
                f"LLM endpoint {self.url} answered HTTP 404: check --llm-url (it should end at the API root,"
                f" e.g. .../v1) and that model {self.model!r} exists: {detail}"
            )
        if _retryable(code):
            return StageError(f"LLM endpoint {self.url} kept failing: HTTP {code} after {attempts} attempts: {detail}")
        return RequestRefused(f"LLM endpoint {self.url} refused the request (HTTP {code}): {detail}")


class RequestRefused(StageError):
    """The endpoint refused a request as malformed (HTTP 4xx other than auth, not found or rate limits)."""


def _response_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    """The default opener (proxies from the environment), following redirects on the endpoint's own host only.

    A server on this machine is never proxied.
    """
    if is_loopback((urllib.parse.urlsplit(url).hostname or "").lower()):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}), SameHostRedirects())
    return urllib.request.build_opener(SameHostRedirects())


def _retryable(code: int) -> bool:
    return code == 429 or 500 <= code < 600


def retry_pause(retry_after: str | None, attempt: int, backoff_s: float = BACKOFF_S) -> float:
    """Seconds to wait before retry number `attempt`: the server's Retry-After (capped), else exponential backoff."""
    asked = _retry_after_s(retry_after)
    if asked is not None:
        return min(RETRY_AFTER_CAP_S, asked)
    return min(RETRY_AFTER_CAP_S, backoff_s * 2 ** (attempt - 1))


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(64 * 1024).decode("utf-8", "replace")  # an error page that never ends is cut short
    except OSError:
        return "(no body)"
    return " ".join(text.split())[:ERROR_BODY_CHARS] or "(no body)"


def _answer_text(raw: bytes, url: str) -> str:
    """The first choice's message content, or a StageError that says what was wrong with the answer."""
    shown = " ".join(raw.decode("utf-8", "replace").split())[:ERROR_BODY_CHARS]
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise StageError(
            f"LLM endpoint {url} answered with something that is not JSON (is --llm-url an"
            f" OpenAI-compatible API?): {shown!r}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("error"), (dict, str)):
        raise StageError(f"LLM endpoint {url} answered with an error: {shown}")
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise StageError(f"LLM endpoint {url} answered JSON without any choices (not a chat completion): {shown!r}")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise StageError(f"LLM endpoint {url} answered a choice without text content: {shown!r}")
    return content


# --- local GGUF models, run quantised by llama.cpp --------------------------------------------


class LocalGguf:
    """A catalogue model (stages/llm/local_models.py) run by llama.cpp in this process, quantised as shipped.

    xllamacpp's prebuilt CPU wheel runs it: no compiler, no float32 copy (SmolLM2 at
    194 MB instead of 0.96 GB through transformers). A process loads each model once
    (`_loaded`) and keeps it until it exits: llama.cpp's server can block in its
    destructor while other Python threads live, and a stage returns memory by exiting.
    The embedded server also listens on a loopback port; an unguessable API key keeps
    other programs off it, and this class only ever calls it in-process.
    """

    def __init__(self, model: LocalModel, server, reason: str = "") -> None:
        self.model = model
        self.reason = reason
        self.label = f"local:{model.name}"
        self.follows_length_requests = model.follows_length_requests
        self._server = server

    @classmethod
    def open(cls, params: LlmParams, ctx: StageContext | None = None, language: str = "en",
             from_source: bool = False) -> LocalGguf:
        """The strongest installed model that fits the stage's ceiling (or the one --llm-model names), loaded."""
        try:
            model, why = local_models.choose(ctx.ceiling_bytes if ctx else 0, params.model, ctx.thresholds if ctx else {})
            if language not in model.languages and not (from_source and language in model.source_languages):
                retells = language in model.source_languages
                raise StageError(
                    f"the local model ({model.name}) cannot write {language} narration (it writes"
                    f" {', '.join(model.languages)}); use --llm openai with a model that can, or pass your own text"
                    " with --script FILE"
                    + (", or give it a text in that language to retell (--source FILE, or a wiki it can reach)"
                       if retells else "")
                )
            if ctx is not None:
                ctx.log(f"local model: {model.name}, {why}")
                ctx.progress(f"loading {model.name}", 0.0)
            path = local_models.model_file(
                model, lambda fraction: ctx and ctx.progress(f"assembling {model.name}", fraction))
        except local_models.ModelUnavailable as exc:
            raise StageError(f"{exc}; or use --llm openai with --llm-url and --llm-model") from None
        reason = f"{model.name}: {why}"
        threads = llama_threads(ctx)
        if ctx is None:
            return cls(model, _loaded(path, threads), reason)
        with ctx.phase("load_model"):
            return cls(model, _loaded(path, threads), reason)

    def complete(
        self, messages: list[Message], *, max_tokens: int, temperature: float, seed: int, schema: dict | None = None,
    ) -> str:
        if not self.follows_length_requests and schema is None:  # a schema's grammar bounds the answer itself
            max_tokens = min(max_tokens, LOCAL_MAX_NEW_TOKENS)
        request = {
            "messages": messages, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
            "top_p": 0.9, "repeat_penalty": 1.15,
        }
        if schema is not None:
            request["response_format"] = _response_format(schema)  # llama.cpp turns it into a grammar
            request["repeat_penalty"] = 1.0  # JSON repeats its quotes and commas: penalised, SmolLM2 stalled
        answer = self._server.handle_chat_completions(request)
        if not isinstance(answer, dict) or "choices" not in answer:
            raise StageError(f"{self.model.name} gave no answer: {str(answer)[:ERROR_BODY_CHARS]}")
        return answer["choices"][0]["message"].get("content") or ""


def llama_threads(ctx: StageContext | None = None) -> int:
    """llama.cpp's threads: the stage's share of the cores, less those other work holds now (lockstep_threads)."""
    share = thread_share()
    if share == 1:
        return 1
    others = others_running()
    threads = lockstep_threads(share, others, len(os.sched_getaffinity(0)))
    if ctx is not None and threads < share:
        ctx.log(f"llama.cpp on {threads} thread{'s' if threads != 1 else ''} instead of {share}: {others:.1f} other"
                " tasks hold the cores, and its threads would wait for each other behind them")
    return threads


_SERVERS: dict[tuple[str, int, tuple[int, int] | None], object] = {}


def _loaded(path: Path, threads: int):
    """llama.cpp serving `path`, started once per process and kept for its life."""
    key = (str(path), threads, SPECULATIVE_NGRAM)
    if key not in _SERVERS:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = LOCAL_CONTEXT_TOKENS
        params.n_batch = 512
        params.n_parallel = 1
        params.cache_prompt = False  # every call is a new prompt: a cache only holds memory
        params.no_extra_bufts = True  # the AMX buffer types crash on these Xeons on prompts of 2+ tokens
        params.api_keys = [secrets.token_hex(24)]
        params.verbosity = 0  # llama.cpp's per-token timing lines would bury the stage's own log
        for cpu in (params.cpuparams, params.cpuparams_batch):
            cpu.n_threads = threads
            cpu.poll = 0  # idle threads sleep: spinning ones starve every other stage on a busy machine
        if SPECULATIVE_NGRAM is not None:
            params.speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K]
            params.speculative.ngram_map_k.size_n, params.speculative.ngram_map_k.size_m = SPECULATIVE_NGRAM
        _SERVERS[key] = xllamacpp.Server(params)
    return _SERVERS[key]


BACKENDS: dict[str, type[ChatBackend]] = {"local": LocalGguf, "openai": OpenAIChat}
"""Every chat backend by its `LlmParams.backend` name."""

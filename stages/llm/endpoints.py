"""`--llm auto`: find the user's own LLM before falling back to the shipped local model.

Responsible for deciding, in this order, which chat endpoint the theme and
script stages use, and saying why: an API key in the environment
(`OPENROUTER_API_KEY` for OpenRouter, then `OPENAI_API_KEY` for OpenAI); an
Ollama server answering on its loopback address (`OLLAMA_HOST`, default
127.0.0.1:11434), asked which models it has; a llama.cpp server on its
default loopback port (`AISHORTS_LLAMACPP_URL`, default
http://127.0.0.1:8080); else None, meaning the local model. An endpoint the
user named with `--llm-url` never reaches this module: the CLI makes that
`--llm openai`. Probes go to loopback addresses only, each bounded to a
fraction of a second, and follow no redirect to another address.

`keyed_endpoint` pairs each key with its issuer for `--llm openai` without
`--llm-url`: `OPENROUTER_API_KEY` goes to openrouter.ai only, `OPENAI_API_KEY`
to api.openai.com only; a key reaches another host only when the user named
that host with `--llm-url` on the command line. Not responsible for talking to
the chosen endpoint (`stages.llm.chat.OpenAIChat`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from aishorts.ipc.params import LlmParams
from aishorts.stages.common.http import is_loopback
from aishorts.stages.common.context import StageError
from aishorts.stages.common.redirects import SameHostRedirects

PROBE_TIMEOUT_S = 0.5
KEYED_SERVICES = (
    # (environment variable, base URL, model used when --llm-model names none)
    ("OPENROUTER_API_KEY", "https://openrouter.ai/api/v1", "openai/gpt-4o-mini"),
    ("OPENAI_API_KEY", "https://api.openai.com/v1", "gpt-4o-mini"),
)
OLLAMA_DEFAULT = "127.0.0.1:11434"
LLAMACPP_DEFAULT = "http://127.0.0.1:8080"
PREFERRED_OLLAMA_FAMILIES = ("qwen2.5", "llama3", "gemma", "mistral", "phi")
"""Instruction-following families, preferred in this order when Ollama has several models."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    key_env: str
    why: str


def find_endpoint(model: str = "") -> Endpoint | None:
    """The user's own LLM, or None when there is none and the local model should write."""
    for key_env, base_url, default_model in KEYED_SERVICES:
        if os.environ.get(key_env):
            return Endpoint(base_url, model or default_model, key_env, f"{key_env} is set")
    ollama = _ollama_base()
    names = _ollama_models(ollama)
    if names:
        chosen = model or pick_ollama_model(names)
        return Endpoint(f"{ollama}/v1", chosen, "", f"Ollama answers at {ollama} with {len(names)} model(s)")
    llamacpp = os.environ.get("AISHORTS_LLAMACPP_URL", LLAMACPP_DEFAULT).rstrip("/")
    served = _openai_models(f"{llamacpp}/v1")
    if served:
        return Endpoint(f"{llamacpp}/v1", model or served[0], "", f"a llama.cpp server answers at {llamacpp}")
    return None


def keyed_endpoint(params: LlmParams) -> Endpoint:
    """Where `--llm openai` sends its request, and which key variable goes with it.

    An endpoint named with --llm-url (a non-empty `base_url`: the CLI refuses one
    that only run.json names) gets the key the user chose. Otherwise the endpoint
    follows the key: the provider that issued it, never another.
    """
    if params.base_url:
        return Endpoint(params.base_url, params.model, params.api_key_env, "--llm-url names it")
    homes = {key_env: (base_url, model) for key_env, base_url, model in KEYED_SERVICES}
    default_env = LlmParams().api_key_env
    candidates = [params.api_key_env] if params.api_key_env != default_env else []
    candidates += [key_env for key_env, _, _ in KEYED_SERVICES]  # the usual variable: whichever key is set
    for key_env in candidates:
        if key_env not in homes:
            raise StageError(f"--llm-key-env {key_env} is not a key this program knows the issuer of"
                             f" ({', '.join(homes)}); give the endpoint that issued it with --llm-url")
        if os.environ.get(key_env):
            base_url, model = homes[key_env]
            return Endpoint(base_url, params.model or model, key_env, f"{key_env} is set; sent to its issuer only")
    base_url, model = homes[KEYED_SERVICES[0][0]]
    return Endpoint(base_url, params.model or model, "", "no API key is set")


def pick_ollama_model(names: list[str]) -> str:
    for family in PREFERRED_OLLAMA_FAMILIES:
        for name in names:
            if name.lower().startswith(family):
                return name
    return names[0]


def _ollama_base() -> str:
    host = os.environ.get("OLLAMA_HOST", OLLAMA_DEFAULT).strip() or OLLAMA_DEFAULT
    return (host if "://" in host else f"http://{host}").rstrip("/")


def _ollama_models(base: str) -> list[str]:
    listing = _get_json(f"{base}/api/tags")
    models = listing.get("models") if isinstance(listing, dict) else None
    return [m["name"] for m in models or [] if isinstance(m, dict) and isinstance(m.get("name"), str)]


def _openai_models(base: str) -> list[str]:
    listing = _get_json(f"{base}/models")
    data = listing.get("data") if isinstance(listing, dict) else None
    return [m["id"] for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _get_json(url: str) -> object:
    """The JSON at `url` on a loopback server, or None when nothing (or nothing sensible) answers there."""
    if not is_loopback(urllib.request.urlparse(url).hostname or ""):
        return None  # probes never leave this machine
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), SameHostRedirects())
    try:
        with opener.open(url, timeout=PROBE_TIMEOUT_S) as response:
            return json.loads(response.read(1_000_000))
    except (urllib.error.URLError, OSError, ValueError, StageError):  # StageError: a redirect elsewhere
        return None

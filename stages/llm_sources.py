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
fraction of a second. Not responsible for talking to the chosen endpoint
(`stages.llm.OpenAIChat`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

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
    host = urllib.request.urlparse(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        return None  # probes never leave this machine
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=PROBE_TIMEOUT_S) as response:
            return json.loads(response.read(1_000_000))
    except (urllib.error.URLError, OSError, ValueError):
        return None

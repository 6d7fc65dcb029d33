"""HTTP redirects that never carry a request's credentials to another host.

urllib follows a redirect with the request's headers, `Authorization`
included, wherever the `Location` points. `SameHostRedirects` follows it only
when scheme, host and port all stay those of the request, and otherwise stops
with a `StageError` that names both hosts. The OpenAI-compatible LLM backend
(stages/llm/chat.py), whose requests carry the user's API key, opens every request
through it. It does not decide which host is trusted in the first place (the
user's --llm-url does), nor add credentials.
"""

from __future__ import annotations

import urllib.parse
import urllib.request

from aishorts.stages.common.context import StageError

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, the port spelled out, so that equal origins compare equal."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number: never the configured origin
        port = parts.netloc.rpartition(":")[2]
    return f"{scheme}://{parts.hostname or ''}:{port}"


class SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects on the request's own scheme, host and port; refuses any other."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        source, target = origin(req.full_url), origin(newurl)
        if source != target:
            fp.close()
            raise StageError(
                f"LLM endpoint {req.full_url} redirected (HTTP {code}) to {newurl}, on another host ({target},"
                f" not the configured {source}); it was not followed, so the API key went to {source} only."
                " If that server is the right one, give its address with --llm-url"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)

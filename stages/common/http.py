"""One bounded HTTP GET, for the stages that read a wiki, a web page or a stock footage API.

Responsible for: a GET with a timeout on each read, at most `limit` bytes of
answer read, redirects followed only to http(s) (or, for a request carrying a
key, not at all), no proxy for a loopback host (the stand-in servers of tests
and local wikis), and a failure as one of three typed exceptions: `HttpStatus`
(the server answered an error or a refused redirect), `NoAnswer` (unreachable,
refused, timed out) and `TooLarge`. Not responsible for what the answer means,
for caching or retries, nor for the words a user reads: each caller says what
failed in its own terms. Downloads of media, which stream to a file under a
deadline, are stages/broll/stock.py's and the hub's.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

WEB_SCHEMES = ("http", "https")
USER_AGENT = "aishorts-runner/0.1 (short videos from cited sources; https://github.com/aishorts)"
"""Every request the stages make says who asks (Wikimedia's etiquette asks it of every client)."""


class FetchFailed(Exception):
    """The GET gave no usable answer; the subclass says how."""


class HttpStatus(FetchFailed):
    """The server answered with an error status, or with a redirect that was not followed."""

    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


class NoAnswer(FetchFailed):
    """No answer: the name did not resolve, the connection was refused or reset, or a read timed out."""

    def __init__(self, reason: str, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class TooLarge(FetchFailed):
    """The answer is longer than the caller's limit (what was read of it is dropped)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str
    """Its media type, lower case ("text/html"), without parameters."""
    charset: str | None
    url: str
    """Where the answer came from, after any redirect."""


class _WebRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, but to http(s) only (urllib's own also go to ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in WEB_SCHEMES:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def is_loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def get(url: str, *, limit: int, timeout_s: float, accept: str, headers: dict[str, str] | None = None,
        follow_redirects: bool = True) -> Answer:
    """The answer to a GET of `url` (an http(s) URL the caller checked), at most `limit` bytes of it, asked for as
    `accept` (the Accept header) with USER_AGENT and the caller's `headers`.

    `follow_redirects=False` is for requests that carry a key: a redirect then ends in `HttpStatus` with its 3xx
    code, so the key never goes anywhere else.
    """
    handlers: list[urllib.request.BaseHandler] = [_WebRedirects() if follow_redirects else _NoRedirects()]
    if is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    try:
        request = urllib.request.Request(url, headers={**(headers or {}), "User-Agent": USER_AGENT, "Accept": accept})
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read(limit + 1)
            answer = Answer(body, response.headers.get_content_type(), response.headers.get_content_charset(),
                            response.geturl())
    except urllib.error.HTTPError as exc:
        exc.close()
        raise HttpStatus(exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NoAnswer(str(reason), isinstance(reason, TimeoutError)) from None
    if len(answer.body) > limit:
        raise TooLarge(limit)
    return answer

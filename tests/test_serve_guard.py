"""`aishorts-runner serve` against a hostile web page: raw HTTP to a real server on 127.0.0.1.

A page on another site can make the user's browser send a "simple" request
(a `text/plain` POST, no preflight) to the local server, or rebind its own
name to 127.0.0.1 and read the answers. The server answers only its own Host
names and its own origin (or one given with --cors), takes JSON bodies only,
and refuses bodies that are too big or empty before they cost it memory.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from aishorts.ipc.sizes import MiB

from tests.serve_helpers import running_server


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One raw HTTP request (http.client sends exactly these headers, plus Host unless given); (status, json)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        given = dict(headers or {})
        connection.putrequest(method, path, skip_host="Host" in given, skip_accept_encoding=True)
        for name, value in given.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data.startswith(b"{") else data), dict(response.getheaders())
    finally:
        connection.close()


def task_count(url: str) -> int:
    status, data, _ = request(url, "GET", "/api/v1/tasks")
    assert status == 200, data
    return data["data"]["total"]


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path / "runs") as srv:
        yield srv


@pytest.fixture
def widened(tmp_path):
    """A server told of one more origin (a front end on another port) and one more name (on the LAN's DNS)."""
    with running_server(tmp_path / "runs", "--cors", "http://localhost:3000", "--allow-host", "shorts.lan") as srv:
        yield srv


def test_a_cross_site_text_plain_post_starts_no_job(server):
    body = json.dumps({"topic": "pwned", "broll_url": ["http://127.0.0.1:9/admin"]}).encode()
    status, data, _ = request(server.url, "POST", "/api/v1/videos", body,
                              {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert status == 403 and data["field"] == "origin"
    assert task_count(server.url) == 0


def test_a_foreign_origin_is_refused_even_with_a_json_body_and_on_every_method(server):
    for method, path in (("POST", "/api/v1/videos"), ("DELETE", "/api/v1/tasks/x"), ("GET", "/api/v1/tasks"),
                         ("POST", "/api/v1/tasks/x/resume")):
        status, data, _ = request(server.url, method, path, b"{}" if method == "POST" else None,
                                  {"Origin": "http://evil.example", "Content-Type": "application/json"})
        assert status == 403 and data["field"] == "origin", (method, path)
    status, _, _ = request(server.url, "POST", "/api/v1/videos", b'{"topic": "x"}',
                           {"Origin": "null", "Content-Type": "application/json"})
    assert status == 403  # a sandboxed frame or a file:// page
    assert task_count(server.url) == 0


def test_the_servers_own_origin_and_one_given_with_cors_pass(widened):
    server = widened
    own = server.url  # http://127.0.0.1:PORT
    status, data, _ = request(server.url, "POST", "/api/v1/tasks/nope/resume", None, {"Origin": own})
    assert status == 404 and data["field"] == "task_id"  # past the guard: the route answered
    status, data, _ = request(server.url, "POST", "/api/v1/tasks/nope/resume", None, {"Origin": "http://evil.example"})
    assert status == 403
    status, data, headers = request(server.url, "GET", "/api/v1/tasks", None, {"Origin": "http://localhost:3000"})
    assert status == 200 and headers.get("access-control-allow-origin") == "http://localhost:3000"
    status, _, headers = request(server.url, "OPTIONS", "/api/v1/videos", None, {
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 200 and headers.get("access-control-allow-origin") == "http://localhost:3000"


def test_a_rebound_host_name_is_not_answered(server):
    port = urlsplit(server.url).port
    status, data, _ = request(server.url, "GET", "/api/v1/tasks", None, {"Host": f"evil.example:{port}"})
    assert status == 421 and data["field"] == "host" and "tasks" not in json.dumps(data)
    status, _, _ = request(server.url, "GET", "/", None, {"Host": f"evil.example:{port}"})
    assert status == 421  # not even the page
    for name in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        status, _, _ = request(server.url, "GET", "/api/v1/tasks", None, {"Host": name})
        assert status == 200, name


def test_a_name_given_with_allow_host_is_answered(widened):
    port = urlsplit(widened.url).port
    assert request(widened.url, "GET", "/api/v1/tasks", None, {"Host": f"shorts.lan:{port}"})[0] == 200
    assert request(widened.url, "GET", "/api/v1/tasks", None, {"Host": f"other.lan:{port}"})[0] == 421


def test_json_endpoints_take_json_only(server):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, data, _ = request(server.url, "POST", "/api/v1/videos", b'{"topic": "x"}',
                                  {"Content-Type": content_type})
        assert status == 415 and data["field"] == "content-type", content_type
    status, _, _ = request(server.url, "POST", "/api/v1/videos", b'{"topic": "x"}')  # no Content-Type at all
    assert status == 415
    assert task_count(server.url) == 0


def test_an_empty_or_whitespace_body_is_a_bad_request_not_a_random_short(server):
    for body in (b"", b"   \n\t  "):
        status, data, _ = request(server.url, "POST", "/api/v1/videos", body, {"Content-Type": "application/json"})
        assert status == 400, (body, data)
    status, _, _ = request(server.url, "POST", "/api/short-video", b" ", {"Content-Type": "application/json"})
    assert status == 400
    assert task_count(server.url) == 0


def test_an_oversized_body_is_refused_before_it_costs_memory(server):
    before = psutil.Process(server.process.pid).memory_info().rss
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(b"POST /api/v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (200 * MiB))
        sent = 0
        try:
            while sent < 200 * MiB:
                sock.sendall(b" " * MiB)
                sent += MiB
        except OSError:
            pass  # the server answered and closed the connection
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 200 * MiB
    # the same without a declared length (chunked): counted as it arrives
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(b"POST /api/v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(200):
                sock.sendall(b"%x\r\n%s\r\n" % (MiB, b" " * MiB))
        except OSError:
            pass
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    grown = psutil.Process(server.process.pid).memory_info().rss - before
    assert grown < 30 * MiB, grown
    assert task_count(server.url) == 0


def test_the_token_comes_from_the_environment_and_the_flag_is_warned_about(tmp_path):
    env = {**os.environ, "AISHORTS_SERVE_TOKEN": "from-env"}
    with running_server(tmp_path / "runs", env=env) as server:
        assert request(server.url, "GET", "/api/v1/tasks")[0] == 401
        assert request(server.url, "GET", "/api/v1/tasks", None, {"Authorization": "Bearer from-env"})[0] == 200
        assert "--token" not in server.log.read_text()
    env.pop("AISHORTS_SERVE_TOKEN")
    with running_server(tmp_path / "runs2", "--token", "on-the-line", env=env) as server:
        assert request(server.url, "GET", "/api/v1/tasks", None, {"Authorization": "Bearer on-the-line"})[0] == 200
        log = server.log.read_text()
        assert "warning: --token is visible" in log and "AISHORTS_SERVE_TOKEN" in log

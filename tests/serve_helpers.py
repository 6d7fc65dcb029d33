"""Helpers for the tests of `aishorts-runner serve`: a real server process on 127.0.0.1, polled over HTTP."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.runner_helpers import RUNNER, wait_for

TERMINAL_STATES = (-1, 1)


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextlib.contextmanager
def running_server(runs: Path, *options: str | Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`aishorts-runner serve --port 0 --runs RUNS OPTIONS...`, up until the block ends (then stopped and reaped)."""
    log = runs.parent / f"server-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*RUNNER, "serve", "--port", "0", "--runs", str(runs), *map(str, options)],
                                   cwd=runs.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        found: list[str] = []

        def listening() -> bool:
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", log.read_text(errors="replace"))
            if match:
                found.append(match.group(1))
            return bool(match) or process.poll() is not None

        assert wait_for(listening, timeout=120, step=0.1), "the server did not start: " + log.read_text()
        assert found, f"the server exited ({process.returncode}): " + log.read_text()
        server = Server(process, found[0], log)
        with server.client() as client:  # the lifespan (task list rebuilt, workers started) is done once it answers
            assert wait_for(lambda: _answers(client), timeout=60, step=0.1), log.read_text()
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/api/v1/server").status_code in (200, 401)
    except httpx.TransportError:
        return False


def task(client: httpx.Client, task_id: str) -> dict:
    response = client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def submit(client: httpx.Client, **request) -> str:
    response = client.post("/api/v1/videos", json=request)
    assert response.status_code == 200, response.text
    return response.json()["data"]["task_id"]


def wait_task(client: httpx.Client, task_id: str, predicate, timeout: float = 300) -> dict:
    """Poll the task until `predicate(task)` holds; the task as last seen (the test asserts on it)."""
    seen: list[dict] = []

    def check() -> bool:
        seen[:] = [task(client, task_id)]
        return predicate(seen[0])

    wait_for(check, timeout=timeout, step=0.2)
    return seen[0]


def finished(client: httpx.Client, task_id: str, timeout: float = 300) -> dict:
    return wait_task(client, task_id, lambda t: t["state"] in TERMINAL_STATES, timeout)


def stage_of(task_data: dict, name: str) -> dict:
    return next(s for s in task_data["stages"] if s["name"] == name)

"""The server's MCP endpoint, driven by the official `mcp` SDK's own client over streamable HTTP.

An agent makes a short with a tool call, polls it, and fetches its files; the
task is the same one the REST API and the page see (one JobManager, one
budget), and a request the API would refuse is refused as a tool error.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from mcp.client.client import Client

from tests.runner_helpers import balloon_pipeline
from tests.serve_helpers import running_server
from tests.test_serve_mpt import small_video


@pytest.fixture
def work(tmp_path) -> Path:
    balloon_pipeline(tmp_path / "balloons.toml", {"name": "grow", "ceiling": "300M", "params": {"mb": 20}})
    return tmp_path


def answer(result) -> dict | list:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if set(content) == {"result"} else content
    return json.loads(result.content[0].text)


async def agent_session(url: str, runs: Path) -> dict:
    async with Client(f"{url}/mcp") as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"make_short", "task_status", "list_tasks", "get_file"} <= tools

        made = answer(await client.call_tool("make_short", {"topic": "Agents and balloons", "pipeline": "balloons"}))
        task_id = made["task_id"]
        for _ in range(600):
            status = answer(await client.call_tool("task_status", {"task_id": task_id}))
            if status["state"] in (-1, 1):
                break
            await asyncio.sleep(0.2)
        assert (status["state"], status["status"]) == (1, "done")
        assert task_id in [t["task_id"] for t in answer(await client.call_tool("list_tasks", {}))]

        report = answer(await client.call_tool("get_file", {"task_id": task_id, "name": "report.json"}))
        assert report["text"] == (runs / task_id / "report.json").read_text()
        small_video(runs / task_id / "final.mp4")
        video = answer(await client.call_tool("get_file", {"task_id": task_id, "name": "final.mp4"}))
        assert base64.b64decode(video["base64"]) == (runs / task_id / "final.mp4").read_bytes()
        assert video["media_type"] == "video/mp4"

        refused = await client.call_tool("make_short", {"topic": "x" * 1000})
        assert refused.is_error and "topic" in refused.content[0].text
        nothing = await client.call_tool("make_short", {})
        assert nothing.is_error and "video_subject" in nothing.content[0].text
        missing = await client.call_tool("task_status", {"task_id": "no-such-task"})
        assert missing.is_error and "no task no-such-task" in missing.content[0].text
        return status


def test_an_agent_makes_a_short_polls_it_and_fetches_its_files_on_the_servers_own_jobs(work):
    runs = work / "runs"
    with running_server(runs, "--pipeline", work / "balloons.toml") as server, server.client() as http:
        status = asyncio.run(agent_session(server.url, runs))
        seen = http.get(f"/api/v1/tasks/{status['task_id']}").json()["data"]  # the same task, over REST
        assert seen["status"] == "done" and seen["title"] == "Agents and balloons"
        assert http.get("/api/v1/tasks").json()["data"]["total"] == 1  # the refusals made nothing


def test_the_mcp_endpoint_needs_the_token_like_every_other(work):
    import httpx

    with running_server(work / "runs", "--token", "s3cret") as server:
        refused = httpx.post(f"{server.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401

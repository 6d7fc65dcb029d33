"""The server's MCP endpoint (`/mcp`, streamable HTTP): tools for agents to make a short, follow it and fetch its files.

Responsible for: the tools (`make_short`, `task_status`, `list_tasks`,
`get_file`), each on the same `JobManager`, memory budget and request checks
as the REST API (a short made here is a task like any other: the page shows
it, DELETE removes it), and the MCP app's routes and session lifetime. The
official SDK (`mcp`, the serve extra) speaks the protocol. Host, Origin and the
token are checked before any of this by `serve.guard` and `serve.app`, so the
SDK's own DNS-rebinding check is left off rather than done twice.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import msgspec
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.concurrency import run_in_threadpool

from aishorts.ipc.files import ArtifactError, resolve_in_run
from aishorts.ipc.sizes import MiB
from aishorts.serve.jobs import Job, JobManager, TaskNotFound
from aishorts.serve.requests import FieldError, ServerSettings, VideoRequest, plan_video
from aishorts.serve.views import FILES, file_path, task_view

MCP_PATH = "/mcp"
MAX_INLINE_BYTES = 64 * MiB
"""The largest file `get_file` hands back inline (base64); a short is a few MB."""
TEXT_FILES = ("captions.srt", "captions.ass", "report.json", "memory.svg", "sources.txt")


class ToolRefusal(ToolError):
    """What a tool says back to the agent when the request cannot be done: the SDK hands its words to the agent."""


def build_mcp(manager: JobManager, settings: ServerSettings) -> MCPServer:
    """The MCP server with its tools, on the app's own job manager."""
    server = MCPServer("aishorts-runner", instructions=(
        "Makes short vertical videos from a topic or a script, every heavy stage under a memory ceiling. Call"
        " make_short, then task_status until state is 1 (done) or -1 (failed), then get_file for final.mp4."))

    def refused(exc: FieldError) -> ToolRefusal:
        return ToolRefusal(f"{exc.field}: {exc.reason}" if exc.field else exc.reason)

    def lookup(task_id: str) -> Job:
        try:
            return manager.find(task_id)
        except TaskNotFound as exc:
            raise ToolRefusal(f"task_id: {exc}") from None

    def shown(job: Job) -> dict[str, Any]:
        return msgspec.to_builtins(task_view(job, manager.limits.warn_fraction))

    @server.tool()
    async def make_short(topic: str | None = None, script: str | None = None, category: str | None = None,
                         language: str | None = None, voice: str | None = None, music: bool | None = None,
                         max_ram: str | None = None, pipeline: str | None = None) -> dict[str, Any]:
        """Start a short: give a topic, or your own narration as script, or a category to let the runner pick a
        topic. Optional: language (e.g. en-us, fr-fr), voice (a Kokoro voice), music, max_ram (e.g. 4G);
        pipeline is for developers (a pipeline file the server was started with).
        Answers the new task (task_id, status); poll task_status with its task_id."""
        try:
            request = msgspec.convert({"topic": topic, "script": script, "category": category, "language": language,
                                       "voice": voice, "music": music, "max_ram": max_ram, "pipeline": pipeline},
                                      VideoRequest)
            planned = await run_in_threadpool(plan_video, request, settings)
        except msgspec.ValidationError as exc:
            raise ToolRefusal(str(exc)) from None
        except FieldError as exc:
            raise refused(exc) from None
        job = await run_in_threadpool(manager.submit, planned)
        return shown(job)

    @server.tool()
    async def task_status(task_id: str) -> dict[str, Any]:
        """One task: state (-1 failed, 1 done, 4 queued or running), status, progress 0-100, its stages with their
        memory, message, and the files it has so far."""
        return await run_in_threadpool(lambda: shown(lookup(task_id)))

    @server.tool()
    async def list_tasks() -> list[dict[str, Any]]:
        """Every task the server knows, newest first: task_id, title, state, status, progress."""
        def listing() -> list[dict[str, Any]]:
            jobs = sorted(manager.all_jobs(), key=lambda job: job.id, reverse=True)
            return [{key: view[key] for key in ("task_id", "title", "state", "status", "progress")}
                    for view in map(shown, jobs)]
        return await run_in_threadpool(listing)

    @server.tool()
    async def get_file(task_id: str, name: str = "final.mp4") -> dict[str, Any]:
        """A file of a task: final.mp4, thumbnail.jpg, captions.srt, captions.ass, memory.svg or report.json.
        Text files come back as `text`, the others as `base64`, with their media_type and size."""
        return await run_in_threadpool(lambda: _file(lookup(task_id), name))

    return server


def _file(job: Job, name: str) -> dict[str, Any]:
    if name not in FILES or name == "captions.vtt":
        raise ToolRefusal(f"{name!r}: the files are {', '.join(n for n in FILES if n != 'captions.vtt')}")
    try:
        path = resolve_in_run(job.run_dir, file_path(job, name).name)
    except ArtifactError as exc:
        raise ToolRefusal(str(exc)) from None
    if not path.is_file():
        raise ToolRefusal(f"task {job.id} has no {name} (yet); see task_status")
    size = path.stat().st_size
    if size > MAX_INLINE_BYTES:
        raise ToolRefusal(f"{name} is {size} bytes, more than this tool hands back; fetch"
                          f" /api/v1/tasks/{job.id}/{name} over HTTP")
    data = path.read_bytes()
    answer: dict[str, Any] = {"task_id": job.id, "name": name, "media_type": FILES[name], "size": size}
    if name in TEXT_FILES:
        answer["text"] = data.decode("utf-8", errors="replace")
    else:
        answer["base64"] = base64.b64encode(data).decode("ascii")
    return answer


def mount_mcp(app, server: MCPServer) -> contextlib.AbstractAsyncContextManager:
    """Add the MCP endpoint's route at `/mcp` to the FastAPI app; the context to run its sessions in (lifespan)."""
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    app.router.routes.extend(mcp_app.routes)
    return server.session_manager.run()

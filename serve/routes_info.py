"""What the server offers and how it is: the voices installed, the bundled music, the form's choices, the request
schema, and the server's own memory and queue.

Responsible for: those read-only answers, and listing the voices in a process of its own (the stage code stays out
of the server), remembered for a while. Not for: any task.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import msgspec
import psutil
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from aishorts.ipc.params import CATEGORIES, ScriptParams, choices
from aishorts.ipc.pipeline import STAGE_NAMES
from aishorts.ipc.request import json_schema
from aishorts.serve.requests import FieldError
from aishorts.serve.deps import Manager, Settings, ok

VOICES_TTL_S = 60.0

router = APIRouter()


async def catalogue_of(request: Request) -> VoiceCatalogue:
    """The server's one catalogue (`app.state.voices`, made by `serve.app`)."""
    return request.app.state.voices


@router.get("/api/v1/voices", summary="Each language the narrator speaks with its voices installed here, its"
            " default first (what the page's voice list offers)")
async def voices(catalogue: Annotated[VoiceCatalogue, Depends(catalogue_of)]) -> Response:
    return ok(await run_in_threadpool(catalogue.get))


@router.get("/api/v1/musics", summary="MoneyPrinterTurbo's: the background music the runner picks from (bundled"
            " mood tracks)")
def musics() -> Response:
    return ok({"files": _music_files()})


@router.get("/api/v1/options", summary="The choices the form offers: categories, platforms, stages, pipelines")
def options(settings: Settings) -> Response:
    return ok({"categories": list(CATEGORIES), "platforms": list(choices(ScriptParams, "platform")),
               "stages": list(STAGE_NAMES), "pipelines": sorted(settings.pipelines)})


@router.get("/api/v1/schema", summary="The request schema (JSON Schema): every option of a short, its choices,"
            " limits and help; the page builds its form from it")
def request_schema() -> Response:
    return ok(json_schema())


@router.get("/api/v1/server", summary="The server's own memory and its queue")
def server_state(manager: Manager, settings: Settings) -> Response:
    jobs = list(manager.jobs.values())
    own = psutil.Process().memory_info().rss
    return ok({
        "rss_bytes": own,
        "total_rss_bytes": own + manager.stages_rss(),
        "max_ram_bytes": settings.max_ram,
        "jobs": settings.jobs,
        "running": sum(job.phase == "running" for job in jobs),
        "queued": sum(job.phase == "queued" for job in jobs),
        "warn_fraction": manager.limits.warn_fraction,
        "pipelines": sorted(settings.pipelines),
    })


class VoiceCatalogue:
    """`python -m aishorts.stages.tts.voices list --json` run in its own process (the stage code stays out of the server),
    remembered for `VOICES_TTL_S` (voices change only when someone fetches more)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: list | None = None
        self._at = 0.0

    def get(self) -> list:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > VOICES_TTL_S:
                self._value, self._at = self._read(), time.monotonic()
            return self._value

    @staticmethod
    def _read() -> list:
        try:
            done = subprocess.run([sys.executable, "-m", "aishorts.stages.tts.voices", "list", "--json"], capture_output=True,
                                  text=True, timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FieldError(None, f"could not list the voices: {exc}", 500) from None
        if done.returncode != 0:
            raise FieldError(None, f"could not list the voices: {done.stderr.strip()[-500:]}", 500)
        return msgspec.json.decode(done.stdout)


def _music_files() -> list[dict]:
    """The bundled mood tracks (immich-memories-music, a data package: nothing heavy is imported)."""
    try:
        from immich_memories_music import tracks_dir
    except ImportError:
        return []
    root = Path(tracks_dir())
    return [{"name": path.name, "size": path.stat().st_size, "file": str(path), "mood": path.parent.name}
            for path in sorted(root.glob("*/*")) if path.is_file() and not path.name.startswith(".")]

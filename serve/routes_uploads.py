"""`POST /api/v1/uploads`: the user's own file (a music track, a clip or a picture) sent as the raw body.

Responsible for: the route only; where a file lands, its name and its size are `serve.uploads`' business.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from aishorts.serve import uploads
from aishorts.serve.deps import Settings, ok

router = APIRouter()


@router.post("/api/v1/uploads", summary="The user's own file (a music track, a clip or a picture) as the raw body;"
             " answers its path, for music_file, and its folder, for broll_dir")
async def upload(request: Request, settings: Settings, name: str, folder: str | None = None) -> Response:
    safe = uploads.safe_name(name)
    folder_id, where = await run_in_threadpool(uploads.upload_folder, settings.runs_dir, folder)
    size = await uploads.store(request.stream(), where / safe)
    return ok({"file": str(where / safe), "folder": str(where), "folder_id": folder_id, "name": safe,
               "size": size, "kind": uploads.kind_of(safe)})

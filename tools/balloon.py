"""The balloon stage: allocates and touches memory at a set rate, to cross ceilings on purpose.

Used by the tests and benchmarks, never by the product pipeline. As a stage
(`python -m tools.balloon CALL_FILE`) it grows to `mb` megabytes at
`rate_mb_s`, optionally through a child process that grows `child_mb` the
same way (as ffmpeg would under a render stage), holds for `hold_s`, and
writes a `Balloon` artifact (padded by `padding_mb` of text, to make the
artifact write itself slow enough to interrupt). `--grow MB RATE HOLD` is the
child's entry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from aishorts.ipc.artifacts import Balloon
from aishorts.ipc.files import atomic_write_bytes
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.harness import stage_main

PAGE = 4096
DETACH = "import os, time\nos.setsid()\nif os.fork():\n    os._exit(0)\ntime.sleep(3600)\n"
"""A process that escapes its parent's process group and session, then loses its parent."""
CHUNK_MB = 8


class BalloonParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mb: int = 100
    rate_mb_s: float = 500.0
    child_mb: int = 0
    hold_s: float = 0.0
    padding_mb: int = 0
    detached_child: bool = False
    """Also start a grandchild that leaves the session and double-forks, as a daemonising program would."""
    payload_kb: int = 0
    """Also write a payload file of this size that the artifact names (0: none)."""
    fail: bool = False


Params = BalloonParams


def grow(mb: int, rate_mb_s: float, on_step=None) -> list[bytearray]:
    """Allocate `mb` MiB in chunks, writing every page so it is resident, at about `rate_mb_s`."""
    held: list[bytearray] = []
    start = time.monotonic()
    done = 0
    while done < mb:
        step = min(CHUNK_MB, mb - done)
        block = bytearray(step * 1024 * 1024)
        block[::PAGE] = b"\x01" * len(range(0, len(block), PAGE))
        held.append(block)
        done += step
        if on_step is not None:
            on_step(done)
        ahead = done / rate_mb_s - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    return held


def write_pipeline(path: Path, *stages: dict) -> Path:
    """A developer pipeline file of balloon stages, each after the one before unless `inputs` says otherwise.

    Each dict holds `name` and optionally `ceiling`, `params`, `inputs`, `module` and `output`.
    """
    lines: list[str] = []
    previous = None
    for stage in stages:
        params = ", ".join(f"{key} = {json.dumps(value)}" for key, value in stage.get("params", {}).items())
        inputs = stage.get("inputs", [previous] if previous else [])
        lines += [
            "[[stage]]",
            f'name = "{stage["name"]}"',
            f'module = "{stage.get("module", "tools.balloon")}"',
            f'output = "{stage.get("output", "balloon")}"',
            f"inputs = {json.dumps(inputs)}",
            f'ceiling = "{stage.get("ceiling", "1G")}"',
            f"params = {{ {params} }}",
            "",
        ]
        previous = stage["name"]
    path.write_text("\n".join(lines))
    return path


def run(ctx: StageContext, params: BalloonParams, **_inputs) -> Balloon:
    if params.fail:
        raise StageError("asked to fail (balloon fail=true)")
    start = time.monotonic()
    child = None
    if params.child_mb:
        child = subprocess.Popen(
            [sys.executable, "-m", "tools.balloon", "--grow", str(params.child_mb), str(params.rate_mb_s), "3600"]
        )
    if params.detached_child:
        subprocess.run([sys.executable, "-c", DETACH], check=True)
    held = grow(params.mb, params.rate_mb_s, lambda done: ctx.progress(f"{done} MB", done / max(params.mb, 1)))
    if child is not None:
        time.sleep(params.child_mb / params.rate_mb_s + 0.5)
        child.terminate()
        child.wait()
    time.sleep(params.hold_s)
    del held
    payload = None
    if params.payload_kb:
        payload = ctx.out_dir / "payload.bin"
        atomic_write_bytes(payload, b"\x01" * (params.payload_kb * 1024))
    return Balloon(
        allocated_mb=params.mb,
        child_mb=params.child_mb,
        seconds=round(time.monotonic() - start, 3),
        padding="x" * (params.padding_mb * 1024 * 1024),
        payload=None if payload is None else ctx.rel(payload),
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--grow":
        kept = grow(int(sys.argv[2]), float(sys.argv[3]))
        time.sleep(float(sys.argv[4]))
    else:
        stage_main(run, BalloonParams)

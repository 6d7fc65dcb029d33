"""A render that runs out of disk says so in one line and leaves no partial video to keep the disk full.

The run directory lives on a real tmpfs (mounting one needs root, as CI has;
elsewhere the test is skipped), filled until a couple of MiB are left once the
render's inputs are in place, so that the encoder meets the full disk mid-way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aishorts.ipc.params import RenderParams
from aishorts.ipc.sizes import MiB
from aishorts.stages.common.context import StageError
from test_faults_runs import _tmpfs as tmpfs
from test_stage_render import make_inputs

LEFT_FOR_THE_RENDER = 2 * MiB
"""Room for the font copy and the captions, not for the video: the encoder hits the full disk."""


def fill(disk: Path, leave: int) -> None:
    """Write a filler file until only `leave` bytes are free on `disk`."""
    size = shutil.disk_usage(disk).free - leave
    with open(disk / "filler", "wb") as handle:
        for _ in range(size // MiB):
            handle.write(bytes(MiB))
        handle.write(bytes(size % MiB))


def test_a_render_that_fills_the_disk_says_so_and_removes_its_partial_video(tmp_path, run_stage_inline):
    with tmpfs(tmp_path / "disk", "32M") as disk:
        run_dir = disk / "run"
        timeline = make_inputs(run_dir)
        fill(disk, LEFT_FOR_THE_RENDER)
        free_before = shutil.disk_usage(disk).free

        with pytest.raises(StageError) as failed:
            run_stage_inline(run_dir, "render", RenderParams(), timeline=timeline)

        message = str(failed.value)
        assert "the disk is full" in message and str(run_dir) in message, message
        assert "\n" not in message, "one line, for the supervisor's failure message"
        left = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "render").rglob("*") if p.is_file())
        assert not [name for name in left if name.endswith((".mp4", ".jpg")) or "partial" in name], left
        assert not list(run_dir.glob("*.mp4")) and not list(run_dir.glob(".*publish*"))
        assert shutil.disk_usage(disk).free >= free_before - MiB, "what the render wrote is gone but small files"

"""The broll stage holds its size limits whatever a source claims: endless downloads and huge images.

A download is capped by the bytes it really writes, not by the Content-Length
a server may leave out: a real loopback server streams a video that never ends
(chunked, no length) to the real yt-dlp. An image too large to decode safely
in the user's folder is skipped before ffmpeg decodes it: a real 16000x16000
PNG, and the stage run as its own process so that the peak memory of its whole
tree (ffmpeg included) can be read from the kernel.
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgspec

from conftest import stage_call
from aishorts.ipc.artifacts import Candidates
from aishorts.ipc.files import read_struct, write_struct
from aishorts.ipc.params import BrollParams
from aishorts.ipc.pipeline import artifact_path
from aishorts.ipc.sizes import MiB
from media_server import serve
from test_stage_broll import SCRIPT, make_clip, make_still

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def most_bytes_held(folder: Path) -> Iterator[list[int]]:
    """Yields [n]: the most bytes the files under `folder` ever held together, sampled every few milliseconds."""
    most, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            most[0] = max(most[0], bytes_held(folder))
            done.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield most
    finally:
        done.set()
        watcher.join()


def bytes_held(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:  # gone between listing and sizing
            pass
    return total


def test_a_download_without_a_length_is_stopped_at_the_byte_cap_and_removed(tmp_path, run_stage_inline):
    site = tmp_path / "site"
    site.mkdir()
    make_clip(site / "clip.mp4")
    run_dir = tmp_path / "run"
    (run_dir / "broll").mkdir(parents=True)
    with serve(site) as base:
        endless, clip = f"{base}/endless/forever.mp4", f"{base}/clip.mp4"
        params = BrollParams(source="urls", urls=[endless, clip], max_filesize_mb=2, download_timeout_s=30,
                             fill_gaps=False)
        start = time.monotonic()
        with most_bytes_held(run_dir / "broll") as most:
            result, _ = run_stage_inline(run_dir, "broll", params, script=SCRIPT)
        elapsed = time.monotonic() - start

    assert [item.origin for item in result.items] == [clip]
    [skipped] = result.skipped
    assert skipped.ref == endless and "max_filesize_mb=2" in skipped.reason
    assert elapsed < 25, "stopped at the cap, not at the time bound"
    assert most[0] <= 3 * MiB, f"{most[0] / MiB:.1f} MiB were on disk at once, over the 2 MB cap and a margin"
    left = sorted(p.name for p in (run_dir / "broll").iterdir())
    assert left == ["artifact.json", "url-2.mp4"], "nothing of the stopped download remains"


def write_huge_png(path: Path, side: int) -> Path:
    """A real RGB PNG of side x side pixels, compressed row by row: cheap to make, 768 MiB once decoded at 16000."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\0" + bytes((40, 90, 200)) * side  # filter byte, then one blue row
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8 bits per channel, RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call([sys.executable, '-m', 'aishorts.stages.broll.stage', sys.argv[1]])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    "sys.exit(code)\n"
)
"""Runs a stage process and prints the peak RSS of the largest process in its tree (the kernel's own figure)."""


def run_broll_process(run_dir: Path, params: BrollParams) -> tuple[Candidates, int]:
    """The broll stage as its own process, as the supervisor starts it: its artifact and its tree's peak RSS."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_struct(run_dir / artifact_path("script"), SCRIPT)
    call_file = run_dir / "call.json"
    call_file.write_bytes(msgspec.json.encode(stage_call(run_dir, "broll", params)))
    done = subprocess.run([sys.executable, "-c", MEASURED, str(call_file)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return read_struct(run_dir / artifact_path("broll"), Candidates), int(done.stdout.split()[-1])


def test_a_huge_image_in_the_local_folder_is_skipped_without_being_decoded(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    make_clip(folder / "walk.mp4")
    make_still(folder / "sunset.png")
    write_huge_png(folder / "poster.png", 16000)

    params = BrollParams(source="local", local_dir=str(folder), fill_gaps=False)
    result, peak = run_broll_process(tmp_path / "run", params)

    assert sorted(item.title for item in result.items) == ["sunset", "walk"]
    [skipped] = result.skipped
    assert Path(skipped.ref).name == "poster.png"
    assert "16000x16000" in skipped.reason and "too large" in skipped.reason
    assert peak < 400 * MiB, f"the stage's tree peaked at {peak / MiB:.0f} MiB: the huge image was decoded"


def test_the_peak_reading_sees_the_ffmpeg_in_the_stage_tree(tmp_path):
    """The measure itself: a stage whose ffmpeg decodes a 6000x6000 still (108 MiB of pixels) peaks above that."""
    folder = tmp_path / "mine"
    folder.mkdir()
    write_huge_png(folder / "big.png", 6000)
    params = BrollParams(source="local", local_dir=str(folder), fill_gaps=False)
    result, peak = run_broll_process(tmp_path / "run", params)
    assert [item.width for item in result.items] == [6000]
    assert peak > 108 * MiB

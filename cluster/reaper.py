"""What a private `--cluster local` Ray leaves behind is removed when the driver ends, however it ends.

`ray.init(address="local")` starts a head (GCS, raylet, log monitor, dashboard
and runtime-env agents) whose session lives in a temporary folder. Killed, the
driver left the agents running for about a minute and the session folder in
/tmp for good. The driver gives that head a temporary folder of its own and
starts this watcher, in its own session so that the terminal's Ctrl-C does not
reach it: once the driver's pid is gone (ended normally, by SIGTERM or by
SIGKILL) it kills every process whose command line or environment names that
folder (only this head's processes do: the path is unique, and the driver puts
it in `AISHORTS_RAY_FOLDER` before Ray starts), with their descendants (the
agents retitle themselves `ray::DashboardAgent`, so their command lines do not
name it), and removes the folder. It never matches processes by name, so other
Ray clusters on the machine are untouched.

Run as `python -m aishorts.cluster.reaper DRIVER_PID FOLDER`; `start_reaper` does that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

POLL_S = 0.2
GRACE_S = 3.0
FOLDER_VARIABLE = "AISHORTS_RAY_FOLDER"


def private_temp_dir() -> Path:
    """A new folder for a private head's session, short enough for Ray's socket paths (107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="aishorts-ray-", dir="/tmp"))


def start_reaper(folder: Path) -> subprocess.Popen:
    """The watcher for `folder`; every process the driver starts from now on carries the folder in its environment."""
    os.environ[FOLDER_VARIABLE] = str(folder)
    return subprocess.Popen([sys.executable, "-m", "aishorts.cluster.reaper", str(os.getpid()), str(folder)],
                            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True)


def processes_of(folder: Path) -> list[psutil.Process]:
    """Every process of this head: those whose command line or environment names `folder`, and their descendants."""
    mark = str(folder)
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and _names(proc, mark):
                found.update((p.pid, p) for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def _names(proc: psutil.Process, mark: str) -> bool:
    if any(mark in part for part in proc.cmdline()):
        return True
    try:
        return proc.environ().get(FOLDER_VARIABLE) == mark
    except psutil.AccessDenied:  # another user's process: never this head's
        return False


def reap(folder: Path) -> None:
    """Stop this head's processes (SIGTERM, then SIGKILL after GRACE_S) and remove its folder."""
    procs = processes_of(folder)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=GRACE_S)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=GRACE_S)
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    driver, folder = int(argv[0]), Path(argv[1])
    if not folder.name.startswith("aishorts-ray-"):
        return 2  # only ever a folder private_temp_dir made
    while psutil.pid_exists(driver) and psutil.Process(driver).status() != psutil.STATUS_ZOMBIE:
        time.sleep(POLL_S)
    reap(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

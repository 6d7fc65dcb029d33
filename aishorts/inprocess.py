"""The old single-process design, kept as a measurable baseline: `--isolation none`.

A `StageExecutor` that runs each stage inside the supervisor's own process,
one after the other, exactly as the seed system did. Nothing is enforced:
ceilings are recorded but cannot be, and no memory is returned between
stages. It lives above `runner/` because it imports stage code into the
process that runs it: the entry (`aishorts.main`) hands it to the supervisor,
which never imports `stages` itself, and imports it only for `--isolation none`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from pathlib import Path

import psutil

from aishorts.ipc.files import ArtifactError
from aishorts.ipc.messages import StageCall
from aishorts.runner.events import Listener
from aishorts.runner.status import Ending
from aishorts.runner.watchdog import ProcessOutcome, WatchSettings
from aishorts.stages.common.context import StageError
from aishorts.stages.harness import crash_failure, execute


def execute_in_process(call: StageCall, settings: WatchSettings, log_path: Path, cancel: threading.Event,
                       tell: Listener) -> ProcessOutcome:
    """Run the stage here; its RSS is the supervisor's own, so the run's meter already counts it."""
    me = psutil.Process()
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    start = time.monotonic()
    cpu_start = me.cpu_times()

    def sample() -> None:
        while not done.wait(settings.poll_s):
            samples.append((time.monotonic() - start, me.memory_info().rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    status: Ending = "done"
    exit_code: int | None = 0
    message = failure_at = ""
    try:
        execute(call, tell)  # only the stage's own events: nothing samples or warns here
    except KeyboardInterrupt:
        status, exit_code, message = "interrupted", None, "interrupted"
        cancel.set()
    except (StageError, ArtifactError) as exc:
        status, exit_code, message = "failed", 1, str(exc)
    except Exception as exc:  # the baseline reports a stage's crash like a child's non-zero exit
        crash = crash_failure(exc)
        status, exit_code, message, failure_at = "failed", 1, crash.reason, crash.where
        _keep_traceback(log_path)
    finally:
        done.set()
        sampler.join()
    samples.append((time.monotonic() - start, me.memory_info().rss))
    cpu_end = me.cpu_times()
    return ProcessOutcome(
        status=status, exit_code=exit_code, signal=None, sampled_peak=max(rss for _, rss in samples),
        ru_maxrss=0, wall_s=time.monotonic() - start,
        cpu_s=(cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system), samples=samples,
        message=message, failure_at=failure_at,
    )


def _keep_traceback(log_path: Path) -> None:
    """The crash's traceback in the stage's log, where the report says it is (as a stage process leaves it)."""
    with contextlib.suppress(OSError):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            log.write(traceback.format_exc())

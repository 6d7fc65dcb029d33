"""A stage that fails on purpose, in each way a stage can: for the tests of how a failure is reported.

`how` picks the way: `refuse` (a StageError, the way a stage says it cannot do its job), `crash`
(an exception no stage code expected), `exit` (it prints its last words and exits 3 without saying
why on its pipe), `segfault` (killed by SIGSEGV, as native code dies). Each first writes `noise` lines
to its log, as libraries do while a stage works.
"""

from __future__ import annotations

import os
import signal
import sys

import msgspec

from aishorts.ipc.artifacts import Balloon
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.harness import stage_main


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    how: str = "refuse"
    noise: int = 20


def _divide(total: int, parts: int) -> float:
    return total / parts


def run(ctx: StageContext, params: Params, **_inputs) -> Balloon:
    for line in range(params.noise):
        print(f"library chatter {line}", file=sys.stderr, flush=True)
    if params.how == "refuse":
        raise StageError("the voice xx_nobody is not one of af_heart, am_michael")
    if params.how == "crash":
        _divide(1, 0)
    if params.how == "exit":
        print("last words before exit 3", file=sys.stderr, flush=True)
        sys.exit(3)
    if params.how == "segfault":
        print("last words before SIGSEGV", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    raise ValueError(f"unknown how {params.how!r}")


if __name__ == "__main__":
    stage_main(run, Params)

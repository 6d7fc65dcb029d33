"""The local LLM's thread count: the cores no other task holds (llama.cpp's threads wait for each other)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from aishorts.stages.common.runtime import lockstep_threads, others_running, set_cpu_budget
from aishorts.stages.llm.chat import llama_threads


def test_lockstep_threads_take_only_the_cores_no_other_task_holds():
    assert lockstep_threads(2, others=0.0, cores=2) == 2
    assert lockstep_threads(2, others=0.4, cores=2) == 2
    assert lockstep_threads(2, others=1.0, cores=2) == 1
    assert lockstep_threads(4, others=1.0, cores=4) == 3
    assert lockstep_threads(2, others=11.0, cores=2) == 1  # never fewer than one
    assert lockstep_threads(1, others=0.0, cores=8) == 1  # never more than the share


def test_busy_cores_leave_llama_cpp_one_thread():
    cores = len(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        assert others_running() >= cores - 0.5
        set_cpu_budget(cores)
        assert llama_threads() == 1
    finally:
        set_cpu_budget(0)
        for process in busy:
            process.kill()
            process.wait()

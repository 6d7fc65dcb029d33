"""The stage runtime: what a stage process may use besides its inputs and parameters.

Responsible for: the environment every stage runs under (no hub telemetry,
no progress bars), applied once by the harness before the stage
function runs; this call's CPU budget and the thread share a model gets from
it; the device a torch model runs on; and where the local Hugging Face cache
is. Not responsible for decoding calls or writing artifacts (stages/harness.py),
nor for the stages' own cache of derived models (stages/common/cache.py). Nothing
heavy is imported here: torch only inside `pick_device`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_DEFAULTS = {
    # Models load with local_files_only; only stages/common/hub.py fetches, and only when the user has not set
    # HF_HUB_OFFLINE: forcing it here would keep online users from ever getting CLIP.
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # tqdm reads this when first imported; a converter's bar would only clutter the stage's stderr.
    "TQDM_DISABLE": "1",
}
"""Set in the stage's process unless the user set them; read when huggingface_hub, transformers and tqdm
are first imported, which no stage does before its `run`."""

MODEL_THREADS = 4
"""The models here gain little past a few threads; more only fight the other stages for cores."""

_cpu_budget: int = 0


def apply_environment() -> None:
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


def set_cpu_budget(threads: int) -> None:
    """This call's share of the CPU (0: the whole affinity mask), given by the supervisor."""
    global _cpu_budget
    _cpu_budget = threads


def cpu_budget() -> int:
    """How many CPU threads this stage should use: its call's share when pipelines run side by side."""
    return _cpu_budget or len(os.sched_getaffinity(0))


def thread_share(cores_per_thread: int = 1, most: int = MODEL_THREADS) -> int:
    """Threads for one model: one per `cores_per_thread` cores of the CPU budget, at least 1, at most `most`."""
    return max(1, min(most, cpu_budget() // cores_per_thread))


def others_running(samples: int = 5, interval_s: float = 0.05) -> float:
    """How many other tasks are running or waiting for a CPU right now, on average over a few samples.

    From /proc/loadavg's running count (the kernel's nr_running, taken at the read), less this
    process's reading thread; 0.0 where that file is missing or unreadable.
    """
    counts = []
    for sample in range(samples):
        if sample:
            time.sleep(interval_s)
        try:
            running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
            counts.append(max(0, int(running) - 1))
        except (OSError, IndexError, ValueError):
            return 0.0
    return sum(counts) / len(counts)


def lockstep_threads(share: int, others: float, cores: int) -> int:
    """Threads for a model whose threads wait for each other after every step (llama.cpp): the cores no other
    task holds, at most `share`, at least 1.

    A lockstep thread that the kernel deschedules holds up its partners at the next barrier, where they
    spin: measured on 2 cores at a load of 11-13 (BENCHMARKS.md, "script threads"), Qwen2.5-Coder-1.5B
    generated 0.5 tokens/s on 2 threads at 0.7-1.0 CPU-s a token, against 3.4 tokens/s at 0.1 on 1 thread.
    """
    free = cores - round(others)
    return max(1, min(share, free))


def pick_device(requested: str) -> str:
    """The torch device: cpu when asked for, else (cuda or auto) cuda when torch sees a GPU, cpu otherwise."""
    if requested == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (as huggingface_hub would), not at its import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"

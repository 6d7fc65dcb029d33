"""The script stage's llama.cpp call on 1 and on 2 threads, alternated: wall, CPU, tokens and tokens/s.

A developer tool, not the product: it measures what stages/common/runtime.py's `lockstep_threads` decides
(on a busy machine llama.cpp's threads wait for each other at every step). Each setting runs in its
own process, with the offline main command's prompt, model and seed:

    python -m tools.bench_llm_threads --rounds 2

Read the figures against the load average printed beside them: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TOPIC = "Why octopuses have three hearts"
SEED = 1917366083
"""The seed the README's main command gives the script stage (its call's llm.seed)."""


def one_call(threads: int) -> dict:
    """Load the strongest local model on `threads` threads and write the whole-script prompt once."""
    from aishorts.ipc.artifacts import Theme
    from aishorts.stages.llm import chat as llm, local_models
    from aishorts.stages.llm.prompts import whole_prompt

    theme = Theme(topic=TOPIC, angle="", keywords=[])
    model, _ = local_models.choose(0)
    started, cpu0 = time.time(), _cpu()
    server = llm._loaded(local_models.model_file(model), threads)
    loaded, cpu1 = time.time(), _cpu()
    answer = server.handle_chat_completions({
        "messages": whole_prompt(theme, "en", 110, 125, 60, 12), "max_tokens": 400, "temperature": 0.7,
        "seed": SEED, "top_p": 0.9, "repeat_penalty": 1.15,
    })
    timings = answer.get("timings", {})
    return {
        "threads": threads, "model": model.name, "load_s": loaded - started, "load_cpu_s": cpu1 - cpu0,
        "call_s": time.time() - loaded, "call_cpu_s": _cpu() - cpu1,
        "prompt_tokens": timings.get("prompt_n"), "prompt_s": (timings.get("prompt_ms") or 0) / 1000,
        "tokens": timings.get("predicted_n"), "generate_s": (timings.get("predicted_ms") or 0) / 1000,
        "words": len(answer["choices"][0]["message"]["content"].split()),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_llm_threads", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child: one call on this many threads
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_call(args.one)), flush=True)
        os._exit(0)  # llama.cpp's server can block in its destructor
    for round_number in range(1, args.rounds + 1):
        for threads in (1, 2):
            load = os.getloadavg()[0]
            child = subprocess.run([sys.executable, "-m", "tools.bench_llm_threads", "--one", str(threads)],
                                   capture_output=True, text=True, check=True)
            r = json.loads(child.stdout.strip().splitlines()[-1])
            rate = r["tokens"] / r["generate_s"] if r["generate_s"] else 0.0
            print(f"round {round_number}, {threads} thread(s): call {r['call_s']:.1f} s, {r['call_cpu_s']:.1f} CPU-s;"
                  f" prompt {r['prompt_tokens']} tokens in {r['prompt_s']:.1f} s; {r['tokens']} tokens at {rate:.1f}/s;"
                  f" {r['words']} words; load {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

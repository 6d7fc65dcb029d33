"""Script samples for reading: what the local models write for three topics, side by side (BENCHMARKS.md).

`python -m tools.samples [--seed 3] > docs/script-samples.md` runs the script stage through the runner
for each topic and each installed local model, and prints a markdown section
with every script as written (model output: it may contain errors), the
model, its time, its peak memory and the fallbacks it needed; `python -m tools.bench`
appends that file to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from aishorts.ipc.sizes import format_size
from aishorts.stages.llm.local_models import CATALOGUE

TOPICS = ("Why octopuses have three hearts", "Why the sky is blue", "How bees make honey")
ROOT = Path(__file__).resolve().parent.parent


def run_script_stage(work: Path, topic: str, model: str, seed: int) -> dict:
    run_dir = work / f"{model}-{abs(hash(topic)) % 10_000}"
    argv = [sys.executable, "-m", "aishorts.runner.cli", "--topic", topic, "--llm", "local", "--llm-model", model,
            "--seed", str(seed), "--run-dir", str(run_dir), "--json"]
    for stage in ("theme", "script"):
        subprocess.run([*argv, "--only", stage], cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads((run_dir / "report.json").read_text())
    artifact = json.loads((run_dir / "script" / "artifact.json").read_text())
    return {"stage": report["stages"][-1], "script": artifact}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.samples", description=__doc__)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    models = [m.name for m in CATALOGUE if m.installed()]
    print("## script samples (model output, read it as such: it may contain errors)\n")
    print(f"Made by `python -m tools.samples --seed {args.seed}`: the script stage alone, `--llm local`, each installed"
          " local model in turn, on this 2-core machine.\n")
    with tempfile.TemporaryDirectory() as scratch:
        for topic in TOPICS:
            print(f"### {topic}\n")
            for model in models:
                got = run_script_stage(Path(scratch), topic, model, args.seed)
                stage, script = got["stage"], got["script"]
                fallbacks = ", ".join(script.get("fallbacks", [])) or "none"
                print(f"**{model}** ({stage['wall_s']:.0f} s, peak {format_size(stage['peak_rss_bytes'])},"
                      f" {len(' '.join([script['hook'], *script['body'], script['cta']]).split())} words,"
                      f" fallbacks: {fallbacks}):\n")
                print("> " + " ".join([script["hook"], *script["body"], script["cta"]]) + "\n")


if __name__ == "__main__":
    main()

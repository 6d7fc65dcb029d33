"""Developer benchmarks: the memory and speed figures of aishorts-runner on this machine.

    python -m tools.bench                 # everything, writes BENCHMARKS.md and benchmarks.json
    python -m tools.bench --quick         # a reduced smoke (CI): every section runs, fewer repeats
    python -m tools.bench --sections startup,watchdog

Every figure is a median of several runs, and every ratio is measured side by
side in the same invocation, because these machines are shared and noisy.
Each row carries its target and whether it was met; a missed target stays
visible. Memory of a whole run is sampled from outside (the runner's process
tree, every 20 ms), independently of the runner's own report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from ipc.sizes import format_size
from runner.watchdog import TreeSampler

MiB = 1024 * 1024
RUNNER = [sys.executable, "-m", "runner.cli"]
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    section: str
    name: str
    figure: str
    target: str = ""
    met: bool | None = None
    command: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def add(self, *args, **kwargs) -> None:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        mark = "" if row.met is None else (" [met]" if row.met else " [MISSED]")
        print(f"  {row.section} | {row.name}: {row.figure}{'  target ' + row.target if row.target else ''}{mark}", flush=True)


@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_rss: int
    samples: list[tuple[float, int]]
    stdout: str
    stderr: str
    cpu_s: float = 0.0


def measure(argv: list[str], cwd: Path, poll_s: float = 0.02, env: dict | None = None, timeout: float = 900) -> Measured:
    """Run `argv`, sampling the RSS of its whole process tree from outside."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = TreeSampler(proc.pid)
    samples: list[tuple[float, int]] = []
    cpu = [0.0]
    done = threading.Event()

    def sample() -> None:
        me = psutil.Process(proc.pid)
        while not done.is_set():
            samples.append((time.monotonic() - start, sampler.rss()))
            try:
                times = me.cpu_times()
                cpu[0] = times.user + times.system
            except psutil.Error:
                pass
            done.wait(poll_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        done.set()
        thread.join()
    return Measured(proc.returncode, time.monotonic() - start, max((s[1] for s in samples), default=0),
                    samples, stdout, stderr, cpu[0])


def median(values):
    return statistics.median(values) if values else float("nan")


def balloon_pipeline(path: Path, stages: list[dict]) -> Path:
    lines = []
    previous = None
    for stage in stages:
        params = ", ".join(f"{k} = {json.dumps(v)}" for k, v in stage.get("params", {}).items())
        inputs = [previous] if previous else []
        lines += ["[[stage]]", f'name = "{stage["name"]}"', 'module = "tools.balloon"', 'output = "balloon"',
                  f"inputs = {json.dumps(inputs)}", f'ceiling = "{stage.get("ceiling", "2G")}"',
                  f"params = {{ {params} }}", ""]
        previous = stage["name"]
    path.write_text("\n".join(lines))
    return path


def cmd(argv: list[str]) -> str:
    shown = ["aishorts-runner" if a == "runner.cli" else a for a in argv]
    if shown[:2] == [sys.executable, "-m"]:
        shown = shown[2:]
    return shlex.join(shown)


# --- sections ---------------------------------------------------------------------------------


def bench_startup(results: Results, work: Path, repeats: int) -> None:
    walls = []
    for _ in range(repeats):
        m = measure([*RUNNER, "--help"], cwd=work)
        walls.append(m.wall_s)
    wall = median(walls)
    results.raw["startup_help_s"] = walls
    results.add("start-up", "`--help` wall time (median)", f"{wall:.3f} s", "< 0.3 s", wall < 0.3, "aishorts-runner --help")
    pipeline = balloon_pipeline(work / "startup.toml", [{"name": "hold", "params": {"mb": 200, "hold_s": 2.0}}])
    run_dir = work / "startup-run"
    m = measure([*RUNNER, "--pipeline", str(pipeline), "--run-dir", str(run_dir), "--json"], cwd=work)
    report = json.loads(m.stdout)
    parent = report["parent_peak_rss_bytes"]
    results.raw["parent_peak_rss_bytes"] = parent
    results.add("start-up", "parent RSS during a run (peak)", format_size(parent), "< 60M", parent < 60 * MiB,
                "aishorts-runner --pipeline startup.toml (a 200 MB balloon stage)")


def bench_watchdog(results: Results, work: Path, repeats: int) -> None:
    poll_s = 0.05
    for rate in (100, 1000):
        gone, overshoot, detect_to_gone = [], [], []
        for i in range(repeats):
            pipeline = balloon_pipeline(work / f"wd{rate}.toml",
                                        [{"name": "grow", "ceiling": "300M", "params": {"mb": 1500, "rate_mb_s": rate}}])
            m = measure([*RUNNER, "--pipeline", str(pipeline), "--run-dir", str(work / f"wd{rate}-{i}"), "--json"], cwd=work)
            stage = json.loads(m.stdout)["stages"][-1]
            if stage["status"] != "oom":
                continue
            detect_to_gone.append(stage["gone_after_crossing_s"])
            # the true crossing lies up to one poll before it was seen: count that poll too
            gone.append(stage["gone_after_crossing_s"] + poll_s)
            overshoot.append(stage["peak_rss_bytes"] - stage["ceiling_bytes"])
        results.raw[f"watchdog_{rate}MBps"] = {"gone_s": gone, "overshoot_bytes": overshoot}
        worst = median(gone)
        results.add("watchdog", f"{rate} MB/s: crossing to tree gone (median, incl. one poll of detection)",
                    f"{worst * 1000:.0f} ms ({worst / poll_s:.1f} polls)", "within 3 polls (150 ms)", worst <= 3 * poll_s,
                    f"aishorts-runner --pipeline wd{rate}.toml (balloon to 1.5 GB at {rate} MB/s, ceiling 300M)")
        results.add("watchdog", f"{rate} MB/s: peak past the ceiling (median)", format_size(median(overshoot)))
    # the watchdog's own cost: the parent's CPU time over a window while one stage idles
    pipeline = balloon_pipeline(work / "idle.toml", [{"name": "idle", "params": {"mb": 10, "hold_s": 9.0}}])
    proc = subprocess.Popen([*RUNNER, "--pipeline", str(pipeline), "--run-dir", str(work / "idle")], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "[idle] started" in line:
            break
    parent = psutil.Process(proc.pid)
    time.sleep(1.0)
    t0, w0 = parent.cpu_times(), time.monotonic()
    time.sleep(6.0)
    t1, w1 = parent.cpu_times(), time.monotonic()
    proc.communicate()
    share = ((t1.user + t1.system) - (t0.user + t0.system)) / (w1 - w0)
    results.raw["watchdog_parent_cpu_share"] = share
    results.add("watchdog", "parent CPU while watching one stage at poll 50 ms (6 s window)", f"{share * 100:.2f}% of one core",
                "< 2%", share < 0.02, "aishorts-runner --pipeline idle.toml (a stage holding 10 MB for 9 s)")


def bench_release(results: Results, work: Path, repeats: int) -> None:
    """Time from a heavy stage's exit until the system's available memory is back where it was."""
    delays = []
    for i in range(repeats):
        pipeline = balloon_pipeline(work / "release.toml", [{"name": "heavy", "params": {"mb": 800, "rate_mb_s": 2000, "hold_s": 1.0}}])
        before = psutil.virtual_memory().available
        proc = subprocess.Popen([*RUNNER, "--pipeline", str(pipeline), "--run-dir", str(work / f"release-{i}")],
                                cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        saw_stage = False
        exited_at = None
        for line in proc.stdout:
            if "heavy] 800 MB" in line:
                saw_stage = True
            if saw_stage and "heavy] done" in line:
                exited_at = time.monotonic()
                break
        while exited_at is not None and psutil.virtual_memory().available < before - 50 * MiB:
            if time.monotonic() - exited_at > 10:
                break
            time.sleep(0.005)
        if exited_at is not None:
            delays.append(time.monotonic() - exited_at)
        proc.wait()
    results.raw["release_s"] = delays
    delay = median(delays)
    results.add("release", "available memory back within 50 MB after an 800 MB stage exits (median)",
                f"{delay * 1000:.0f} ms", "< 1 s", delay < 1.0, "aishorts-runner --pipeline release.toml")


SECTIONS = {
    "startup": bench_startup,
    "watchdog": bench_watchdog,
    "release": bench_release,
}


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "memory": format_size(psutil.virtual_memory().total),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write_markdown(path: Path, results: Results, info: dict, argv: list[str]) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Measured on {info['date']}: {info['cores']} cores, {info['memory']} of memory, Python {info['python']}.",
        f"Made by `python -m tools.bench {' '.join(argv)}`; raw figures in `benchmarks.json`.",
        "Figures are medians of several runs; ratios come from runs made side by side in the same invocation.",
        "",
    ]
    section = None
    for row in results.rows:
        if row.section != section:
            section = row.section
            lines += ["", f"## {section}", "", "| what | figure | target | met | command |", "| --- | --- | --- | --- | --- |"]
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.name} | {row.figure} | {row.target} | {met} | `{row.command}` |" if row.command
                     else f"| {row.name} | {row.figure} | {row.target} | {met} | |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat each: a smoke that every section runs")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks.json")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}")
    repeats = 1 if args.quick else 5
    results = Results()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="aishorts-bench-") as tmp:
        for name in chosen:
            print(f"[{name}]", flush=True)
            SECTIONS[name](results, Path(tmp), repeats)
    write_markdown(args.out, results, info, argv)
    args.json.write_text(json.dumps({"machine": info, "rows": [asdict(r) for r in results.rows], "raw": results.raw}, indent=2))
    missed = [r for r in results.rows if r.met is False]
    print(f"{len(results.rows)} figures, {len(missed)} targets missed; see {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

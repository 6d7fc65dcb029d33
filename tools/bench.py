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
import contextlib
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import psutil

from aishorts.ipc.artifacts import Timeline
from aishorts.ipc.files import read_struct, resolve_in_run
from aishorts.ipc.params import RenderParams
from aishorts.ipc.pipeline import STAGE_NAMES
from aishorts.ipc.sizes import MiB, format_size
from aishorts.runner.watchdog import TreeSampler
from tools.balloon import write_pipeline

RUNNER = [sys.executable, "-m", "aishorts"]
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
    tree_cpu_s: float = 0.0
    """CPU of the whole tree (every process it started and reaped), user plus system."""


def measure(argv: list[str], cwd: Path, poll_s: float = 0.02, env: dict | None = None, timeout: float = 900) -> Measured:
    """Run `argv`, sampling the RSS of its whole process tree from outside."""
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(proc.returncode, time.monotonic() - start, max((s[1] for s in samples), default=0),
                    samples, stdout, stderr, cpu[0], tree_cpu)


def median(values):
    return statistics.median(values) if values else float("nan")


def balloon_pipeline(path: Path, stages: list[dict]) -> Path:
    return write_pipeline(path, *[{"ceiling": "2G", **stage} for stage in stages])


def cmd(argv: list[str]) -> str:
    shown = ["aishorts-runner" if a == "aishorts" else a for a in argv]
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


def anon_pages() -> int:
    """The kernel's count of anonymous memory, system-wide: what process trees hold and give back at exit."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("AnonPages:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no AnonPages line")


def bench_release(results: Results, work: Path, repeats: int) -> None:
    """Time from a heavy stage's exit until the system's memory is back where it was, by two meters.

    AnonPages (/proc/meminfo) counts the memory processes hold; MemAvailable is what
    the system would give a new program. On this Firecracker guest (lazy memory
    init, free-page reporting) MemAvailable lags: an 800 MB stage moved it by only
    about 200-300 MB while AnonPages rose by 823 MB, and after the stage was reaped
    it crept back over seconds, at times more than 10, while AnonPages was back at once.
    """
    # Both read so that more is freer: back means at least the level before, less 50 MB.
    meters = {"anon": lambda: -anon_pages(), "available": lambda: psutil.virtual_memory().available}
    delays: dict[str, list[float]] = {name: [] for name in meters}
    for i in range(repeats):
        pipeline = balloon_pipeline(work / "release.toml", [{"name": "heavy", "params": {"mb": 800, "rate_mb_s": 2000, "hold_s": 1.0}}])
        before = {name: read() for name, read in meters.items()}
        proc = subprocess.Popen([*RUNNER, "--pipeline", str(pipeline), "--run-dir", str(work / f"release-{i}")],
                                cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        stage = None
        for line in proc.stdout:
            if "heavy] 800 MB" in line:
                stage = _stage_process(proc.pid, "tools.balloon")
                break
        exited_at = _exit_time(stage) if stage is not None else None
        pending = dict(meters) if exited_at is not None else {}
        while pending and time.monotonic() - exited_at <= 10:
            for name, read in list(pending.items()):
                if read() >= before[name] - 50 * MiB:
                    delays[name].append(time.monotonic() - exited_at)
                    del pending[name]
            time.sleep(0.005)
        for name in pending:
            delays[name].append(float("inf"))
        proc.stdout.read()
        proc.wait()
    # None: not back within 10 s (JSON has no infinity)
    results.raw["release_s"] = {name: [None if d == float("inf") else d for d in got] for name, got in delays.items()}
    command = "aishorts-runner --pipeline release.toml"
    for name, label, target in (
        ("anon", "processes' memory (AnonPages) back within 50 MB of its level before an 800 MB stage", "< 1 s"),
        ("available", "available memory (MemAvailable) back within 50 MB of its level before the same stage", ""),
    ):
        delay = median(delays[name])
        shown = "not back within 10 s" if delay == float("inf") else f"{delay * 1000:.0f} ms"
        worst = max(delays[name], default=float("nan"))
        results.add("release", f"{label}, counted from the stage process's exit (median)",
                    f"{shown} (slowest {'over 10 s' if worst == float('inf') else f'{worst * 1000:.0f} ms'})",
                    target, (delay < 1.0) if target else None, command)


def _stage_process(supervisor_pid: int, module: str) -> psutil.Process | None:
    for child in psutil.Process(supervisor_pid).children():
        with contextlib.suppress(psutil.Error):
            if module in child.cmdline():
                return child
    return None


def _exit_time(stage: psutil.Process, poll_s: float = 0.002) -> float:
    """When the stage process ended (a zombie not yet reaped has already given its memory back)."""
    while True:
        try:
            if stage.status() == psutil.STATUS_ZOMBIE:
                return time.monotonic()
        except psutil.NoSuchProcess:
            return time.monotonic()
        time.sleep(poll_s)


SHORT_SCRIPT = (
    "Octopuses have three hearts and blue blood. "
    "Two hearts pump blood through the gills, while the third serves the rest of the body. "
    "Follow for more strange facts about the ocean."
)
PIPELINE_SCRIPT = (
    "Octopuses have three hearts, and one of them stops when they swim. "
    "Two small hearts push blood through the gills, where it picks up oxygen. "
    "The third heart, the biggest, sends that blood around the rest of the body. "
    "Their blood is blue, because it carries oxygen with copper instead of iron. "
    "That copper works better in cold water with little oxygen. "
    "But it is less efficient than our blood, so swimming tires them quickly. "
    "That is why octopuses would rather crawl along the sea floor. "
    "Follow for more strange facts about the ocean."
)


def _run_short(work: Path, name: str, *extra: str, script: str = PIPELINE_SCRIPT) -> tuple[Measured, dict, Path]:
    script_file = work / f"{name}.txt"
    script_file.write_text(script)
    run_dir = work / name
    argv = [*RUNNER, "--script", str(script_file), "--run-dir", str(run_dir), "--json", *extra]
    m = measure(argv, cwd=work)
    if m.returncode != 0:
        raise RuntimeError(f"{cmd(argv)} failed ({m.returncode}): {m.stderr[-2000:]}")
    return m, json.loads(m.stdout), run_dir


def _after_each_stage(report: dict) -> list[int]:
    """The run's RSS (parent plus anything running) right after each stage ended, as the runner sampled it."""
    return [s["run_rss_after_bytes"] for s in report["stages"] if s["status"] == "done"]


def bench_isolation(results: Results, work: Path, repeats: int) -> None:
    """The same pipeline in one process (the old design) and with a process per stage, side by side.

    `--category science --seed 7` makes the theme stage load the local LLM, so all four models run:
    the LLM that fits (theme), Kokoro (tts), MiniLM (match) and ffmpeg (render).
    """
    extra = ("--category", "science", "--seed", "7", "--max-ram", "4G")
    figures: dict[str, dict[str, list]] = {m: {"peak": [], "wall": [], "left": [], "last_left": []} for m in ("none", "process")}
    for i in range(max(1, repeats // 2)):
        for mode in ("none", "process") if i % 2 == 0 else ("process", "none"):
            m, report, _ = _run_short(work, f"iso-{mode}-{i}", "--isolation", mode, *extra)
            left = _after_each_stage(report)
            f = figures[mode]
            f["peak"].append(m.peak_rss)
            f["wall"].append(m.wall_s)
            f["left"].append(max(left[:-1]) if len(left) > 1 else 0)
            f["last_left"].append(left[-1] if left else 0)
    results.raw["isolation"] = figures
    command = "aishorts-runner --script octopus.txt --category science --seed 7 --max-ram 4G --isolation {}"
    none_peak, proc_peak = median(figures["none"]["peak"]), median(figures["process"]["peak"])
    results.add("isolation vs the old design", "peak RSS of the whole run, `--isolation none`", format_size(none_peak),
                command=command.format("none"))
    results.add("isolation vs the old design", "peak RSS of the whole run, `--isolation process`", format_size(proc_peak),
                "not above the `none` peak", proc_peak <= none_peak, command.format("process"))
    results.add("isolation vs the old design", "peak ratio process / none", f"{proc_peak / none_peak:.2f}")
    none_left, proc_left = median(figures["none"]["left"]), median(figures["process"]["left"])
    results.add("isolation vs the old design", "RSS left between stages (worst gap), `none`", format_size(none_left),
                command=command.format("none"))
    results.add("isolation vs the old design", "RSS left between stages (worst gap), `process`", format_size(proc_left),
                "< 100M within 1 s", proc_left < 100 * MiB, command.format("process"))
    none_wall, proc_wall = median(figures["none"]["wall"]), median(figures["process"]["wall"])
    results.add("isolation vs the old design", "total time none / process",
                f"{none_wall:.1f} s / {proc_wall:.1f} s (ratio process/none {proc_wall / none_wall:.2f})")
    results.add("isolation vs the old design", "the seed system, for scale: quoted from its own diagnosis, not measured here",
                "1.46G for CLIP alone, 8G or more for the whole pipeline (quoted)")


def bench_stages(results: Results, work: Path, repeats: int) -> None:
    """Per stage: peak RSS, wall and CPU time, model load vs work, and which backend ran."""
    runs = []
    for i in range(max(1, repeats // 2)):
        _, report, run_dir = _run_short(work, f"stages-{i}", "--category", "science", "--seed", "7", "--max-ram", "4G")
        runs.append((report, run_dir))
    backends = _backends(runs[0][1])
    results.raw["stages"] = [r for r, _ in runs]
    for name in STAGE_NAMES:
        stages = [next(s for s in r["stages"] if s["name"] == name) for r, _ in runs]
        peak = median([s["peak_rss_bytes"] for s in stages])
        wall = median([s["wall_s"] for s in stages])
        cpu = median([s["cpu_s"] for s in stages])
        phases = {k: median([s["phases"].get(k, 0.0) for s in stages]) for k in stages[0]["phases"]}
        phase_text = ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
        results.add("per stage", f"{name} ({backends.get(name, '')})",
                    f"peak {format_size(peak)}, wall {wall:.1f} s, CPU {cpu:.1f} s" + (f"; {phase_text}" if phase_text else ""),
                    command="aishorts-runner --script octopus.txt --category science --seed 7 --max-ram 4G")


def _backends(run_dir: Path) -> dict[str, str]:
    def artifact(name: str) -> dict:
        return json.loads((run_dir / name / "artifact.json").read_text())

    return {
        "theme": artifact("theme")["backend"],
        "script": artifact("script")["backend"],
        "tts": f"{artifact('tts')['backend']} {artifact('tts')['voice']}",
        "broll": artifact("broll")["source"],
        "match": f"{artifact('match')['scorer']} {artifact('match')['model']}",
        "timeline": "no model",
        "render": artifact("render")["renderer"],
    }


def write_rendered_frames(run_dir: Path, timeline: Timeline, out: Path) -> None:
    """The frames the ffmpeg renderer would encode (its per-segment producers), raw, into one file."""
    from aishorts.stages.render.stage import frame_plan, producer_command, producer_graph

    class Paths:
        def path(self, relative: str) -> Path:
            return resolve_in_run(run_dir, relative)

    cuts = frame_plan(timeline)
    with open(out, "wb") as sink:
        for i in range(len(cuts)):
            inputs, graph = producer_graph(Paths(), timeline, cuts, i)
            subprocess.run(producer_command(inputs, graph), stdout=sink, check=True)


def bench_render(results: Results, work: Path, repeats: int) -> None:
    """The ffmpeg renderer against MoviePy on one timeline, and both against a plain one-source encode."""
    import shutil

    from aishorts.stages.common.media import ffmpeg_exe
    from aishorts.stages.render.stage import encoder_args

    _, _, base = _run_short(work, "render-base", "--no-music", script=SHORT_SCRIPT)
    timeline = read_struct(base / "timeline" / "artifact.json", Timeline)
    duration = timeline.duration_s
    frames = work / "frames.yuv"
    write_rendered_frames(base, timeline, frames)
    walls: dict[str, list[float]] = {"ffmpeg": [], "moviepy": [], "floor": []}
    peaks: dict[str, list[int]] = {"ffmpeg": [], "moviepy": [], "floor": []}
    floor_argv = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                  "-s", f"{timeline.width}x{timeline.height}", "-framerate", str(timeline.fps), "-i", str(frames),
                  "-i", str(base / timeline.narration_wav), *encoder_args(timeline, RenderParams()),
                  str(work / "floor.mp4")]
    for i in range(max(1, repeats // 2) + (0 if repeats == 1 else 1)):
        for renderer in ("ffmpeg", "moviepy", "floor") if i % 2 == 0 else ("moviepy", "floor", "ffmpeg"):
            if renderer == "floor":
                m = measure(floor_argv, cwd=work)
            else:
                run_dir = work / f"render-{renderer}-{i}"
                shutil.copytree(base, run_dir)
                m = measure([*RUNNER, "--run-dir", str(run_dir), "--only", "render", "--renderer", renderer], cwd=work)
            if m.returncode != 0:
                raise RuntimeError(f"render with {renderer} failed: {m.stderr[-2000:]}")
            walls[renderer].append(m.wall_s)
            peaks[renderer].append(m.peak_rss)
    frames.unlink()
    results.raw["render"] = {"duration_s": duration, "walls": walls, "peaks": peaks}
    w = {k: median(v) for k, v in walls.items()}
    floor_label = "the floor: one plain ffmpeg encode, same settings, of the renderer's own frames read raw from one file"
    for name, label in (("floor", floor_label), ("ffmpeg", "ffmpeg renderer (default)"),
                        ("moviepy", "MoviePy renderer")):
        results.add("render", f"{label}: {duration:.1f} s of 1080x1920 video",
                    f"{w[name]:.1f} s wall, {duration / w[name]:.2f} s of video per s, peak {format_size(median(peaks[name]))}",
                    command="ffmpeg -f rawvideo -i frames.yuv -i narration.wav ... (see tools/bench.py)" if name == "floor"
                    else f"aishorts-runner --run-dir RUN --only render --renderer {name}")
    results.add("render", "ffmpeg renderer / floor", f"{w['ffmpeg'] / w['floor']:.2f}x", "within 1.5x",
                w["ffmpeg"] / w["floor"] <= 1.5)
    results.add("render", "MoviePy / ffmpeg renderer", f"{w['moviepy'] / w['ffmpeg']:.2f}x", "at least 2x",
                w["moviepy"] / w["ffmpeg"] >= 2.0)


def bench_encoder(results: Results, work: Path, repeats: int) -> None:
    """x264 as the renderer runs it by default (frame threads) and lean, under a small ceiling (slice threads, no
    B-frames), and slice threads alone, on the same rendered 1080x1920 frames: wall, peak of the encoder, and
    PSNR/SSIM of each against the frames themselves."""
    from aishorts.stages.common.media import ffmpeg_exe
    from aishorts.stages.render.stage import encoder_args

    _, _, base = _run_short(work, "encoder-base", "--no-music", script=SHORT_SCRIPT)
    timeline = read_struct(base / "timeline" / "artifact.json", Timeline)
    frames = work / "frames.yuv"
    write_rendered_frames(base, timeline, frames)
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{timeline.width}x{timeline.height}",
           "-framerate", str(timeline.fps), "-i", str(frames)]
    default, lean = "frame threads (default)", "lean: slice threads, no B-frames (under a small ceiling)"
    superfast = "preset superfast (the default before `quick`), frame threads"
    settings = {default: encoder_args(timeline, RenderParams()), lean: encoder_args(timeline, RenderParams(), lean=True),
                "slice threads alone": encoder_args(timeline, RenderParams(preset="superfast")) + ["-x264-params", "sliced-threads=1"],
                superfast: encoder_args(timeline, RenderParams(preset="superfast"))}
    walls: dict[str, list[float]] = {name: [] for name in settings}
    cpus: dict[str, list[float]] = {name: [] for name in settings}
    peaks: dict[str, list[int]] = {name: [] for name in settings}
    outputs = {name: work / f"encoder-{i}.mp4" for i, name in enumerate(settings)}
    for i in range(max(2, repeats)):
        for name in settings if i % 2 == 0 else reversed(list(settings)):
            m = measure([ffmpeg_exe(), "-v", "error", "-y", *raw, *settings[name], str(outputs[name])], cwd=work)
            if m.returncode != 0:
                raise RuntimeError(f"encoding with {name} failed: {m.stderr[-2000:]}")
            walls[name].append(m.wall_s)
            cpus[name].append(m.tree_cpu_s)
            peaks[name].append(m.peak_rss)
    quality = {name: _psnr_ssim(ffmpeg_exe(), raw, out) for name, out in outputs.items()}
    frames.unlink()
    results.raw["encoder"] = {"walls": walls, "peaks": peaks, "quality": quality}
    for name in settings:
        psnr, ssim = quality[name]
        results.add("encoder", f"x264 {name}: {timeline.duration_s:.1f} s of 1080x1920",
                    f"{median(walls[name]):.1f} s wall, {median(cpus[name]):.1f} s CPU,"
                    f" encoder peak {format_size(median(peaks[name]))},"
                    f" PSNR {psnr:.2f} dB, SSIM {ssim:.4f}", command="ffmpeg -f rawvideo -i frames.yuv ... (tools/bench.py)")
    wall = median(walls[lean]) / median(walls[default])
    results.add("encoder", "lean / default: wall", f"{wall:.2f}x", "at most 1.15x", wall <= 1.15)
    peak = median(peaks[lean]) / median(peaks[default])
    results.add("encoder", "lean / default: encoder peak", f"{peak:.2f}x", "below 1x", peak < 1)
    psnr, ssim = quality[lean][0] - quality[default][0], quality[lean][1] - quality[default][1]
    results.add("encoder", "lean - default: PSNR, SSIM", f"{psnr:+.2f} dB, {ssim:+.4f}", "PSNR no lower than -0.5 dB",
                psnr >= -0.5)
    cpu = median(cpus[default]) / median(cpus[superfast])
    results.add("encoder", "quick (default) / superfast: x264 CPU", f"{cpu:.2f}x", "below 0.8x", cpu < 0.8)
    psnr, ssim = quality[default][0] - quality[superfast][0], quality[default][1] - quality[superfast][1]
    results.add("encoder", "quick (default) - superfast: PSNR, SSIM", f"{psnr:+.2f} dB, {ssim:+.4f}",
                "PSNR no lower, SSIM within -0.001", psnr >= 0 and ssim >= -0.001)


def _psnr_ssim(ffmpeg: str, raw: list[str], encoded: Path) -> tuple[float, float]:
    """Average PSNR (dB) and SSIM of `encoded` against the raw frames it was made from."""
    import re

    done = subprocess.run([ffmpeg, "-hide_banner", "-i", str(encoded), *raw,
                           "-lavfi", "[0:v][1:v]psnr;[0:v][1:v]ssim", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    psnr = re.search(r"PSNR .*average:([0-9.]+|inf)", done.stderr)
    ssim = re.search(r"SSIM .*All:([0-9.]+)", done.stderr)
    if not psnr or not ssim:
        raise RuntimeError(f"no PSNR/SSIM in ffmpeg's output: {done.stderr[-1000:]}")
    return float(psnr.group(1)), float(ssim.group(1))


def bench_cluster(results: Results, work: Path, repeats: int) -> None:
    """4 balloon shorts by `--jobs 2` and by `--cluster` on a local 2-node Ray (one CPU each), side by side."""
    from tools.cluster_bench import cluster_batch, local_batch, write_batch

    pipeline, topics = write_batch(work, shorts=4, mb=300, hold_s=2.0)
    runs: dict[str, list[dict]] = {"jobs": [], "cluster": []}
    for i in range(max(2, repeats // 2)):
        for kind in ("jobs", "cluster") if i % 2 == 0 else ("cluster", "jobs"):
            batch_dir = work / f"cluster-{kind}-{i}"
            got = local_batch(pipeline, topics, batch_dir) if kind == "jobs" else cluster_batch(pipeline, topics, batch_dir)
            if got["exit"] != 0:
                raise RuntimeError(f"the {kind} batch failed: {got}")
            runs[kind].append(got)
    results.raw["cluster"] = runs
    jobs_wall = median([r["wall_s"] for r in runs["jobs"]])
    cluster_wall = median([r["wall_s"] for r in runs["cluster"]])
    c = runs["cluster"]
    command = "python -m tools.cluster_bench (4 balloon shorts of 300M held 2 s)"
    results.add("cluster", "4 shorts, `--jobs 2` (no Ray)", f"{jobs_wall:.1f} s wall, batch peak"
                f" {median([r['batch_peak_mib'] for r in runs['jobs']]):.0f} MiB", command=command)
    results.add("cluster", "4 shorts, `--cluster` on a local 2-node Ray (one CPU each)",
                f"{cluster_wall:.1f} s wall (+ {median([r['cluster_start_s'] for r in c]):.1f} s to start the cluster)",
                command=command)
    results.add("cluster", "Ray's own processes (GCS, raylets, workers; stage trees excluded)",
                f"{median([r['ray_idle_rss_mib'] for r in c]):.0f} MiB idle, at most"
                f" {median([r['ray_max_rss_during_batch_mib'] for r in c]):.0f} MiB during the batch;"
                f" the driver {median([r['driver_max_rss_mib'] for r in c]):.0f} MiB", command=command)
    results.add("cluster", "`--cluster` / `--jobs 2` wall on one machine", f"{cluster_wall / jobs_wall:.2f}x",
                "(no target: Ray pays off across machines, not on one)")


def bench_concurrency(results: Results, work: Path, repeats: int) -> None:
    """One short alone, then two with --jobs 1 and --jobs 2, all under the same --max-ram.

    Two cases: the main job (a topic, so the local LLM writes the script; the target is
    held against this one) and a given script, where every stage left is CPU-heavy
    and the ratio shows what two cores allow. Both shorts of a pair are the same
    short, so the ratio measures concurrency and nothing else.
    """
    script = work / "conc.txt"
    script.write_text(PIPELINE_SCRIPT)
    topic = "Why octopuses have three hearts"
    cases = {  # extra arguments, as shown, runs of each, whether to run the serial pair
        "topic": (["--seed", "3"], "--seed 3", max(1, repeats // 2), True),
        "script": (["--script", str(script)], "--script conc.txt", max(1, repeats // 2), False),
    }
    figures: dict[str, dict[str, list]] = {}
    for case, (extra, shown, runs, with_serial) in cases.items():
        one, two = work / f"{case}-one.txt", work / f"{case}-two.txt"
        one.write_text(f"{topic}\n")
        two.write_text(f"{topic}\n{topic}\n")
        got: dict[str, list] = {"one": [], "jobs1": [], "jobs2": [], "jobs2_peak": [], "jobs2_waited": [],
                                "one_cpu": [], "jobs2_cpu": []}
        for i in range(runs):
            # the serial pair is twice one short; once is enough to show it
            plan = [("one", one, 1), ("jobs2", two, 2)] + ([("jobs1", two, 1)] if with_serial and i == 0 else [])
            for label, topics, jobs in plan:
                argv = [*RUNNER, "--topics-file", str(topics), *extra, "--jobs", str(jobs),
                        "--max-ram", "3G", "--run-dir", str(work / f"conc-{case}-{label}-{i}"), "--json"]
                m = measure(argv, cwd=work)
                if m.returncode != 0:
                    raise RuntimeError(f"{cmd(argv)} failed: {m.stderr[-2000:]}")
                got[label].append(m.wall_s)
                if label in ("one", "jobs2"):
                    got[f"{label}_cpu"].append(m.tree_cpu_s)
                if label == "jobs2":
                    got["jobs2_peak"].append(m.peak_rss)
                    got["jobs2_waited"].append(json.loads(m.stdout)["waited_for_budget_s"])
        figures[case] = got
        _concurrency_rows(results, case, got, shown)
    results.raw["concurrency"] = figures


def _concurrency_rows(results: Results, case: str, got: dict[str, list], shown: str) -> None:
    what = "topic, local LLM script" if case == "topic" else "script given"
    command = f"aishorts-runner --topics-file {{}}.txt {shown} --max-ram 3G --jobs {{}}"
    one, jobs2 = median(got["one"]), median(got["jobs2"])
    cores = os.cpu_count() or 1
    one_cpu = median(got["one_cpu"])
    results.add("concurrency", f"{what}: one short alone", f"{one:.1f} s, {one_cpu:.0f} s of CPU",
                command=command.format("one", 1))
    if got["jobs1"]:
        results.add("concurrency", f"{what}: two shorts, --jobs 1", f"{median(got['jobs1']):.1f} s",
                    command=command.format("two", 1))
    ratio = jobs2 / one
    pair_cpu = median(got["jobs2_cpu"])
    results.add("concurrency", f"{what}: two shorts, --jobs 2",
                f"{jobs2:.1f} s ({ratio:.2f}x one short); their {pair_cpu:.0f} s of CPU take at least"
                f" {pair_cpu / cores:.1f} s ({pair_cpu / cores / one:.2f}x) on {cores} cores",
                "under 1.6x one short" if case == "topic" else "", ratio < 1.6 if case == "topic" else None,
                command.format("two", 2))
    results.add("concurrency", f"{what}: --jobs 2 peak of the whole / time stages waited for budget",
                f"{format_size(median(got['jobs2_peak']))} of 3G / {median(got['jobs2_waited']):.1f} s",
                "peak under --max-ram", median(got["jobs2_peak"]) < 3 * 1024 * MiB, command.format("two", 2))


def bench_budget(results: Results, work: Path, repeats: int) -> None:
    """The main job, the local LLM's script included, under the --max-ram the target names."""
    argv = [*RUNNER, "--topic", "Why octopuses have three hearts", "--seed", "3", "--max-ram", "1.5G",
            "--run-dir", str(work / "budget"), "--json"]
    m = measure(argv, cwd=work)
    report = json.loads(m.stdout) if m.stdout.strip() else {"status": f"exit {m.returncode}", "stages": []}
    heaviest = max(report["stages"], key=lambda s: s["peak_rss_bytes"], default=None)
    results.raw["budget"] = {"status": report["status"], "peak_sampled_outside": m.peak_rss, "wall_s": m.wall_s}
    results.add("budget", "the default pipeline (local LLM script) under --max-ram 1.5G",
                f"{report['status']}, peak {format_size(m.peak_rss)} (sampled outside), {m.wall_s:.0f} s"
                + (f"; heaviest stage {heaviest['name']} {format_size(heaviest['peak_rss_bytes'])}" if heaviest else ""),
                "finishes", report["status"] == "done",
                'aishorts-runner --topic "Why octopuses have three hearts" --seed 3 --max-ram 1.5G')


MAIN_COMMAND = ["--topic", "Why octopuses have three hearts", "--max-ram", "4G"]
"""The README's main command: offline defaults, the local LLM writing the script."""


def realtime_figures(report: dict, duration_s: float) -> dict:
    """One run of the main command: its wall time against the short's length, and when each stage ran."""
    script = next((s for s in report["stages"] if s["name"] == "script"), None)
    script_s = (script["ended_at_s"] - script["started_at_s"]) if script and script["started_at_s"] is not None else 0.0
    ran = [s for s in report["stages"] if s["started_at_s"] is not None]
    return {
        "wall_s": report["wall_s"], "duration_s": duration_s, "ratio": report["wall_s"] / duration_s,
        "ratio_without_script": (report["wall_s"] - script_s) / duration_s, "script_s": script_s,
        "stage_sum_s": sum(s["wall_s"] for s in ran),
        "gaps_s": _supervisor_gaps(ran), "overlap_s": _overlap(ran), "cpu_s": sum(s["cpu_s"] for s in ran),
        "stages": {s["name"]: {"start": s["started_at_s"], "end": s["ended_at_s"], "wall": s["wall_s"],
                               "cpu": s["cpu_s"], "phases": s["phases"]} for s in ran},
    }


def _wall_for(run: dict) -> str:
    return f"{run['wall_s']:.1f} s for {run['duration_s']:.1f} s"


def _supervisor_gaps(stages: list[dict]) -> float:
    """Seconds of the run in which no stage process was alive: the supervisor's own time between stages."""
    spans = sorted((s["started_at_s"], s["ended_at_s"]) for s in stages)
    gaps, reach = 0.0, 0.0
    for start, end in spans:
        gaps += max(0.0, start - reach)
        reach = max(reach, end)
    return gaps


def _overlap(stages: list[dict]) -> float:
    """Seconds of the run in which two or more stage processes were alive at once."""
    edges = sorted([(s["started_at_s"], 1) for s in stages] + [(s["ended_at_s"], -1) for s in stages])
    both, alive, since = 0.0, 0, 0.0
    for at, step in edges:
        if alive >= 2:
            both += at - since
        alive, since = alive + step, at
    return both


def bench_realtime(results: Results, work: Path, repeats: int) -> None:
    """The README's main command three times: wall time over the short's length, with each stage's start and end."""
    runs = []
    for i in range(3 if repeats > 1 else 1):
        run_dir = work / f"realtime-{i}"
        argv = [*RUNNER, *MAIN_COMMAND, "--run-dir", str(run_dir), "--json"]
        load_before = os.getloadavg()[0]
        m = measure(argv, cwd=work, timeout=3600)  # a shared machine can slow the local LLM many times over
        if m.returncode != 0:
            raise RuntimeError(f"{cmd(argv)} failed ({m.returncode}): {m.stderr[-2000:]}")
        duration = json.loads((run_dir / "render" / "artifact.json").read_text())["duration_s"]
        runs.append(realtime_figures(json.loads(m.stdout), duration))
        runs[-1]["load_average"] = [load_before, os.getloadavg()[0]]  # 1 minute, before and after: the machine is shared
        print(f"    run {i + 1}: {runs[-1]['wall_s']:.1f} s for a {duration:.1f} s short"
              f" (load average {load_before:.1f} before, {runs[-1]['load_average'][1]:.1f} after)", flush=True)
    results.raw["realtime"] = runs
    command = "aishorts-runner " + shlex.join(MAIN_COMMAND)
    ratio = median([r["ratio"] for r in runs])
    section = "real time (the main command)"
    results.add(section, f"wall time / video duration, median of {len(runs)}", f"{ratio:.2f}"
                f" ({', '.join(_wall_for(r) for r in runs)})",
                "< 1.0", ratio < 1.0, command)
    results.add(section, "the same without the script stage's time", f"{median([r['ratio_without_script'] for r in runs]):.2f}"
                f" (script stage {median([r['script_s'] for r in runs]):.1f} s)", command=command)
    results.add(section, "sum of the stages' own times (each as long as it took here, beside another stage or not)",
                f"{median([r['stage_sum_s'] for r in runs]):.1f} s against {median([r['wall_s'] for r in runs]):.1f} s of wall",
                command=command)
    results.add(section, "load average (1 minute) before and after each run: the machine is shared", "; ".join(
        f"{r['load_average'][0]:.1f} -> {r['load_average'][1]:.1f}" for r in runs), command=command)
    results.add(section, "supervisor's own time between stages (no stage alive)",
                f"{median([r['gaps_s'] for r in runs]):.2f} s", command=command)
    middle = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
    results.add(section, "per-stage timeline of the median run (start-end, s)", "; ".join(
        f"{name} {t['start']:.1f}-{t['end']:.1f}" for name, t in middle["stages"].items()), command=command)
    results.add(section, "per-stage wall and CPU of the median run (user+sys of each stage's process tree)", "; ".join(
        f"{name} {t['wall']:.1f} s wall, {t['cpu']:.1f} CPU-s" for name, t in middle["stages"].items())
        + f"; all stages {middle['cpu_s']:.1f} CPU-s", command=command)
    results.add(section, "time with two or more stages running at once (median run)",
                f"{middle['overlap_s']:.1f} s of {middle['wall_s']:.1f} s", command=command)


def bench_grounded(results: Results, work: Path, repeats: int, cases_file: Path | None = None) -> None:
    """Scripts from a source against scripts from nothing, side by side (tools/bench_grounded.py, in a child), or
    the cases a run of it wrote to `cases_file` (--grounded-cases: on a crowded machine they take an hour)."""
    seeds = 1 if repeats == 1 else 3
    if cases_file is None:
        out = work / "grounded.json"
        argv = [sys.executable, "-m", "tools.bench_grounded", "--seeds", str(seeds), "--out", str(out)]
        subprocess.run(argv, cwd=ROOT, check=True, timeout=7200)
    from tools.bench_grounded import summary

    cases = json.loads((cases_file or out).read_text())
    results.raw["grounded"] = cases
    seeds = len({c["seed"] for c in cases})
    modes = list(dict.fromkeys(c["mode"] for c in cases))
    topics = ", ".join(dict.fromkeys(c["topic"] for c in cases))
    command = f"python -m tools.bench_grounded --seeds {seeds}" + (
        f" --modes {','.join(modes)}" if modes != ["grounded", "ungrounded"] else "")
    for mode, figures in summary(cases).items():
        first, total = (int(x) for x in figures["first_attempt"].split("/"))
        results.add("grounded scripts", f"{mode}: {topics} x {seeds} seeds",
                    f"words {figures['words']}; inside the budget from the first answer alone"
                    f" {figures['first_attempt']} (its own words {figures.get('answer_words', 'n/a')}); supported"
                    f" sentences {figures['supported']}; numbers not in the source {figures['numbers_not_in_source']};"
                    f" script stage {figures['stage_s']} s (median)",
                    "first answer in budget for 9 of 10" if mode == "grounded" else "",
                    first >= 0.9 * total if mode == "grounded" else None, command)


MODEL_SECTIONS = {"isolation", "stages", "concurrency", "budget", "realtime", "grounded"}


def warm_model_caches() -> None:
    """Build what the stages derive once per machine (Kokoro's timed model, the assembled local LLMs) before
    timing anything, so no figure includes a first run's preparation."""
    code = ("from aishorts.stages.tts.kokoro_timing import timed_model; from aishorts.stages.llm import local_models as m; timed_model();"
            " [m.model_file(model) for model in m.CATALOGUE if model.installed()]")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


SECTIONS = {
    "startup": bench_startup,
    "watchdog": bench_watchdog,
    "release": bench_release,
    "isolation": bench_isolation,
    "stages": bench_stages,
    "render": bench_render,
    "encoder": bench_encoder,
    "cluster": bench_cluster,
    "concurrency": bench_concurrency,
    "budget": bench_budget,
    "realtime": bench_realtime,
    "grounded": bench_grounded,
}


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "memory": format_size(psutil.virtual_memory().total),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


JUDGED_BY_READING = (ROOT / "docs" / "illustrated" / "relevance.md", ROOT / "docs" / "grounded.md",
                     ROOT / "docs" / "script-samples.md", ROOT / "docs" / "languages.md",
                     ROOT / "docs" / "local-scripts.md")
"""Appended to BENCHMARKS.md as written: the b-roll relevance table (old photo stills against the illustrated
library, `python -m tools.illustrated_sheets`), the grounded scripts case by case with what was read in them
(`python -m tools.bench_grounded`), and the local models' script samples (`python -m tools.samples`), which a
reader judges; the per-language narration table (`python -m tools.bench_languages`) and the local model's
scripts by language with what was read in them (`python -m tools.bench_languages --scripts N`); nothing there
is measured by this tool."""


def write_markdown(path: Path, results: Results, info: dict, commands: list[str]) -> None:
    made_by = ", then ".join(f"`{c}`" for c in commands)
    lines = [
        "# Benchmarks",
        "",
        f"Measured on {info['date']}: {info['cores']} cores, {info['memory']} of memory, Python {info['python']}.",
        f"Made by {made_by}; raw figures in `benchmarks.json`. Each row names the runs it measured.",
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
    for judged in JUDGED_BY_READING:
        if judged.is_file():
            lines += ["", judged.read_text().rstrip()]
    path.write_text("\n".join(lines) + "\n")


def _merge_previous(results: Results, previous: dict) -> None:
    """Earlier rows of the sections not run now, in their earlier order, before this run's rows."""
    fresh = {row.section for row in results.rows}
    kept = [Row(**row) for row in previous.get("rows", []) if row["section"] not in fresh]
    results.rows[:0] = kept
    for key, value in previous.get("raw", {}).items():
        results.raw.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat each: a smoke that every section runs")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks.json")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other sections' rows from the existing --json file; replace only those run now")
    parser.add_argument("--grounded-cases", type=Path,
                        help="the grounded section from the cases `python -m tools.bench_grounded --out FILE` wrote")
    args = parser.parse_args(argv)
    if args.grounded_cases:
        SECTIONS["grounded"] = partial(bench_grounded, cases_file=args.grounded_cases)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}")
    repeats = 1 if args.quick else 5
    results = Results()
    info = machine()
    if set(chosen) & (MODEL_SECTIONS - ({"grounded"} if args.grounded_cases else set())):
        warm_model_caches()
    with tempfile.TemporaryDirectory(prefix="aishorts-bench-") as tmp:
        for name in chosen:
            print(f"[{name}]", flush=True)
            SECTIONS[name](results, Path(tmp), repeats)
    commands = [" ".join(["python -m tools.bench", *argv])]
    if args.merge and args.json.exists():
        previous = json.loads(args.json.read_text())
        _merge_previous(results, previous)
        commands = previous.get("commands", []) + commands
    write_markdown(args.out, results, info, commands)
    args.json.write_text(json.dumps({"machine": info, "commands": commands, "rows": [asdict(r) for r in results.rows],
                                     "raw": results.raw}, indent=2))
    missed = [r for r in results.rows if r.met is False]
    print(f"{len(results.rows)} figures, {len(missed)} targets missed; see {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

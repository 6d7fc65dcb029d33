"""What a run leaves behind for people and tools: report.json, a memory timeline SVG, a table.

The report is rewritten after every stage, so a run that dies or is
interrupted still says how far it got. This module only records and draws;
it decides nothing about the run.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from xml.sax.saxutils import escape

import msgspec

from aishorts.ipc.files import atomic_write_bytes, encode_json, write_struct
from aishorts.ipc.sizes import MiB, format_size
from aishorts.runner.status import RunStatus, StageStatus

REPORT_VERSION = 1
TIMELINE_POINTS = 200


class Sample(msgspec.Struct, array_like=True):
    t: float
    rss: int


class StageReport(msgspec.Struct, kw_only=True):
    name: str
    status: StageStatus
    ceiling_bytes: int = 0
    peak_rss_bytes: int = 0
    sampled_peak_rss_bytes: int = 0
    ru_maxrss_bytes: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    exit_code: int | None = None
    signal: int | None = None
    started_at_s: float | None = None
    """Seconds from the start of the run (one clock for all of a run's stages): when its process started."""
    ready_at_s: float | None = None
    """When its inputs were all stamped complete and it asked for its memory (the run's clock)."""
    ended_at_s: float | None = None
    """When its process tree was gone and its memory back in the budget (the run's clock); None if skipped."""
    waited_for_budget_s: float = 0.0
    crossed_ceiling_at_s: float | None = None
    crossed_ceiling_rss_bytes: int | None = None
    """The tree's RSS in the sample that first crossed the ceiling."""
    gone_after_crossing_s: float | None = None
    killed_by_os: bool = False
    survivor_pids: list[int] = []
    """Processes of the stage's tree still alive 2 s after it was killed; empty unless something escaped."""
    run_rss_after_bytes: int = 0
    """The whole run's RSS (parent plus anything still running) right after this stage ended."""
    warnings: list[str] = []
    notes: list[str] = []
    """What the stage said the user must know about its result (the script stage: "grounded in 2 sources")."""
    phases: dict[str, float] = {}
    message: str = ""
    log: str = ""
    timeline: list[Sample] = []


class Suggestion(msgspec.Struct, kw_only=True):
    """How to resume a run that a stage's memory stopped: the limits and budget to give, as values.

    Every rerun command is rendered from it (`command_line`); the server's resume
    button and the cluster's driver read its fields instead of parsing a command.
    """

    stage: str
    """The stage that ran out of memory."""
    more_memory: bool = True
    """False when the operating system killed it: then the same limits, once memory is free."""
    limits: dict[str, int] = {}
    """Stage -> the ceiling (bytes) a rerun gives with `--limit`: the user's own, and the stopped stage's raised."""
    max_ram: int | None = None
    """The `--max-ram` (bytes) a rerun gives, raised to fit the stage's new ceiling; None when the run had none."""
    command: list[str]
    """How the user started the runner (e.g. `.venv/bin/aishorts-runner`), so the rendered command runs as typed."""
    resume_args: list[str] = []
    """Options besides --run-dir, --max-ram and --limit that a rerun must repeat (e.g. --limits FILE)."""

    def limit_sizes(self) -> dict[str, str]:
        """The limits as `--limit` writes them (whole MiB, rounded up), by stage."""
        return {name: _megabytes(ceiling) for name, ceiling in sorted(self.limits.items())}

    def max_ram_size(self) -> str | None:
        return None if self.max_ram is None else _megabytes(self.max_ram)

    def command_line(self, run_dir: str) -> str:
        """The shell command that resumes the run in `run_dir` with these limits."""
        args = [*self.command, "--run-dir", run_dir, *self.resume_args]
        if (max_ram := self.max_ram_size()) is not None:
            args += ["--max-ram", max_ram]
        for name, size in self.limit_sizes().items():
            args += ["--limit", f"{name}={size}"]
        return shlex.join(args)


def _megabytes(size: int) -> str:
    return f"{-(-size // MiB)}M"


class RunReport(msgspec.Struct, kw_only=True):
    version: int = REPORT_VERSION
    run_dir: str
    status: RunStatus
    exit_code: int | None = None
    isolation: str = "process"
    max_ram_bytes: int | None = None
    peak_rss_bytes: int = 0
    """Parent plus every running stage tree, sampled together."""
    parent_peak_rss_bytes: int = 0
    wall_s: float = 0.0
    message: str = ""
    rerun_command: str = ""
    """`suggestion` rendered for this run directory; empty when there is none."""
    suggestion: Suggestion | None = None
    """After an OOM: the limits and budget a rerun should give (absent from reports of older versions)."""
    failed_stage: str = ""
    """The first stage that did not finish (its status and message are the run's); empty when none."""
    report_error: str = ""
    """Why the latest attempt to write this report failed (a full disk), so the summary can say so."""
    stages: list[StageReport] = []
    timeline: list[Sample] = []
    """The whole run (parent plus stages), downsampled."""


def downsample(samples: list[tuple[float, int]], points: int = TIMELINE_POINTS) -> list[Sample]:
    """At most `points` samples, keeping each bucket's maximum so peaks survive."""
    if len(samples) <= points:
        return [Sample(round(t, 3), rss) for t, rss in samples]
    size = len(samples) / points
    out = []
    for i in range(points):
        bucket = samples[int(i * size): max(int((i + 1) * size), int(i * size) + 1)]
        t, rss = max(bucket, key=lambda s: s[1])
        out.append(Sample(round(t, 3), rss))
    return out


def write_report(run_dir: Path, report: RunReport) -> None:
    write_struct(run_dir / "report.json", report)
    atomic_write_bytes(run_dir / "memory.svg", timeline_svg(report).encode())


def report_json(report: RunReport) -> bytes:
    return encode_json(report)


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


LANE_PX = 14


def timeline_svg(report: RunReport, width: int = 900, height: int = 360) -> str:
    """The run's memory over time: the whole run's RSS, each stage's RSS, its ceiling, and --max-ram.

    Under the chart, one lane per stage that ran shows when it waited for memory (light) and ran (solid),
    on the same time axis, so stages that overlapped are seen side by side.
    """
    ran = [stage for stage in report.stages if stage.started_at_s is not None]
    lanes_px = LANE_PX * len(ran) + (10 if ran else 0)
    height += lanes_px
    left, right, top, bottom = 70, 20, 30, 40 + lanes_px
    t_end = max([s.t for s in report.timeline] + [s.started_at_s + s.wall_s for s in report.stages if s.started_at_s is not None] + [1.0])
    ceilings = [s.ceiling_bytes for s in report.stages] + [report.max_ram_bytes or 0, report.peak_rss_bytes]
    y_max = max(ceilings + [1]) * 1.1

    def x(t: float) -> float:
        return left + (width - left - right) * t / t_end

    def y(rss: float) -> float:
        return height - bottom - (height - top - bottom) * rss / y_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">Memory of run {escape(Path(report.run_dir).name)}: {report.status},'
        f' peak {format_size(report.peak_rss_bytes)}</text>',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0)}" stroke="black"/>',
        f'<text x="{width - right}" y="{height - 10}" text-anchor="end">{t_end:.1f} s</text>',
    ]
    for frac in (0.25, 0.5, 0.75, 1.0):
        value = y_max * frac / 1.1
        parts.append(f'<text x="{left - 5}" y="{y(value) + 4}" text-anchor="end">{format_size(value)}</text>')
    if report.max_ram_bytes:
        parts.append(_hline(x(0), x(t_end), y(report.max_ram_bytes), "red", f"--max-ram {format_size(report.max_ram_bytes)}"))
    if report.timeline:
        parts.append(_polyline([(x(s.t), y(s.rss)) for s in report.timeline], "black", 2))
    colours = {stage.name: _COLOURS[i % len(_COLOURS)] for i, stage in enumerate(ran)}
    for stage in (s for s in ran if s.timeline):
        colour = colours[stage.name]
        t0 = stage.started_at_s or 0.0
        parts.append(_polyline([(x(t0 + s.t), y(s.rss)) for s in stage.timeline], colour, 1))
        parts.append(_hline(x(t0), x(t0 + stage.wall_s), y(stage.ceiling_bytes), colour, f"{stage.name} ceiling", dash=True))
    parts += _stage_lanes(ran, x, y(0) + 30)
    parts.append("</svg>")
    return "\n".join(parts)


def _stage_lanes(stages: list[StageReport], x, top: float) -> list[str]:
    """One bar per stage: its wait for memory budget (pale) and its run (solid), named at the left."""
    parts = []
    for i, stage in enumerate(stages):
        colour = _COLOURS[i % len(_COLOURS)]  # as the stage's memory curve above
        lane_y = top + i * LANE_PX
        start = stage.started_at_s or 0.0
        end = stage.ended_at_s if stage.ended_at_s is not None else start + stage.wall_s
        if stage.ready_at_s is not None and start > stage.ready_at_s:
            parts.append(f'<rect x="{x(stage.ready_at_s):.1f}" y="{lane_y:.1f}" width="{x(start) - x(stage.ready_at_s):.1f}"'
                         f' height="{LANE_PX - 4}" fill="{colour}" fill-opacity="0.25"/>')
        parts.append(f'<rect x="{x(start):.1f}" y="{lane_y:.1f}" width="{max(x(end) - x(start), 1.0):.1f}"'
                     f' height="{LANE_PX - 4}" fill="{colour}"><title>{escape(stage.name)}: {start:.1f}-{end:.1f} s,'
                     f' {stage.status}</title></rect>')
        parts.append(f'<text x="{x(0) - 5:.1f}" y="{lane_y + LANE_PX - 5:.1f}" text-anchor="end">{escape(stage.name)}</text>')
    return parts


def _polyline(points: list[tuple[float, float]], colour: str, width: int) -> str:
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{coords}"/>'


def _hline(x1: float, x2: float, y: float, colour: str, label: str, dash: bool = False) -> str:
    style = ' stroke-dasharray="4 3"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{colour}"{style}/>'
        f'<text x="{x1 + 3:.1f}" y="{y - 3:.1f}" fill="{colour}">{escape(label)}</text>'
    )


def summary_table(report: RunReport, title: str | None = None):
    from rich.table import Table
    from rich.text import Text

    # Text, not str: a run directory or stage named like "[/]" is shown, never read as rich markup.
    table = Table(title=Text(title or f"run {report.run_dir}: {report.status}"))
    for column in ("stage", "status", "peak", "ceiling", "time", "ran"):
        table.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for stage in report.stages:
        table.add_row(
            Text(stage.name), stage.status, format_size(stage.peak_rss_bytes or None),
            format_size(stage.ceiling_bytes or None), f"{stage.wall_s:.1f}s", _span(stage),
        )
    table.add_row("[b]run[/b]", report.status, format_size(report.peak_rss_bytes),
                  format_size(report.max_ram_bytes), f"{report.wall_s:.1f}s", f"0.0-{report.wall_s:.1f}s")
    return table


def _span(stage: StageReport) -> str:
    """When a stage ran on the run's clock, e.g. `12.3-20.1s`; stages whose spans overlap ran side by side."""
    if stage.started_at_s is None:
        return ""
    end = stage.ended_at_s if stage.ended_at_s is not None else stage.started_at_s + stage.wall_s
    return f"{stage.started_at_s:.1f}-{end:.1f}s"

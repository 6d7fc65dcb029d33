"""Memory limits: the limits file format, the user's overrides, and what a budget allows each stage.

Covers reading, validating and writing limits files (the shipped
`runner/limits.toml`, linked as `limits.toml` at the top of the repository, is
the one source of every default), applying `--limit STAGE=SIZE`, and the
arithmetic of `--max-ram`: what it leaves for stages beside the supervisor's
reserve, each stage's effective ceiling, and the budget a given ceiling needs.
It does not watch or kill anything (see `runner.watchdog`) nor queue stages
(see `runner.budget`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from aishorts.ipc.sizes import MiB, SizeError, format_size, parse_size
from aishorts.runner.errors import UsageError
from aishorts.runner.userfiles import read_toml

DEFAULT_LIMITS_FILE = Path(__file__).resolve().parent / "limits.toml"
"""Shipped inside the package, so a wheel install finds its defaults too."""
GLOBAL_KEYS = ("poll_ms", "warn_fraction", "kill_grace_ms", "parent_reserve", "default")
"""Keys a user's limits file may leave out: they come from the shipped file. Stage tables never do."""


@dataclass(frozen=True)
class StageLimit:
    ceiling: int
    minimum: int
    overridden: bool = False
    """Set by --limit: the user's number stands even below `minimum`."""
    usual_ceiling: int | None = None
    """The limits file's ceiling, for a stage whose ceiling --limit replaced (what to suggest after an OOM)."""
    thresholds: dict[str, int] = field(default_factory=dict)
    """Sizes the stage decides by (e.g. tts's `lean_below`), handed to it in its call; from the limits file."""


@dataclass(frozen=True)
class Limits:
    poll_s: float
    warn_fraction: float
    kill_grace_s: float
    parent_reserve: int
    default: StageLimit
    stages: dict[str, StageLimit] = field(default_factory=dict)
    source: str = ""
    """The file these limits were read from, for messages."""

    def for_stage(self, name: str) -> StageLimit:
        limit = self.stages.get(name, self.default)
        return limit if limit.overridden else replace(limit, usual_ceiling=limit.ceiling)

    def with_override(self, name: str, ceiling: int) -> Limits:
        current = self.for_stage(name)
        updated = StageLimit(ceiling=ceiling, minimum=min(current.minimum, ceiling), overridden=True,
                             usual_ceiling=current.usual_ceiling or current.ceiling, thresholds=current.thresholds)
        return replace(self, stages={**self.stages, name: updated})

    def with_stage(self, name: str, limit: StageLimit) -> Limits:
        return replace(self, stages={**self.stages, name: limit})

    def refuse_unknown_stages(self, known: tuple[str, ...]) -> None:
        """A `[stages.NAME]` for a stage the pipeline does not have is a misspelling, not something to ignore."""
        unknown = sorted(set(self.stages) - set(known))
        if unknown:
            raise UsageError(
                f"limits file {self.source}: unknown stage(s) {', '.join(unknown)}; stages are {', '.join(known)}"
            )

    def stage_room(self, max_ram: int | None) -> int | None:
        """What `--max-ram` leaves for stage trees beside the supervisor's reserve (None: no budget)."""
        return None if max_ram is None else max_ram - self.parent_reserve

    def max_ram_for(self, ceiling: int) -> int:
        """The smallest `--max-ram` under which a stage keeps `ceiling`."""
        return ceiling + self.parent_reserve

    def ceiling(self, stage: str, max_ram: int | None) -> int:
        """The smaller of the stage's ceiling and what --max-ram leaves beside the parent.

        Fails before anything is spawned when the budget leaves less than the stage's
        known minimum (unless the user set this stage's limit themselves).
        """
        limit = self.for_stage(stage)
        room = self.stage_room(max_ram)
        if room is None:
            return limit.ceiling
        if room <= 0:
            raise UsageError(
                f"--max-ram {format_size(max_ram)} leaves nothing for stages beside the supervisor's own"
                f" {format_size(self.parent_reserve)}; give at least {format_size(self.max_ram_for(limit.minimum))}"
            )
        ceiling = min(limit.ceiling, room)
        if ceiling < limit.minimum and not limit.overridden:
            raise UsageError(
                f"stage {stage} needs at least {format_size(limit.minimum)} but --max-ram {format_size(max_ram)}"
                f" leaves {format_size(room)} after the supervisor's {format_size(self.parent_reserve)};"
                f" raise --max-ram to {format_size(self.max_ram_for(limit.minimum))} or more"
            )
        return ceiling

    def to_toml(self, header: str = "") -> str:
        """This limits file as TOML that `load_limits` reads back to an equal `Limits` (sizes rounded up to MiB)."""
        lines = [f"# {line}" for line in header.splitlines()]
        lines += [
            f"poll_ms = {round(self.poll_s * 1000)}",
            f"warn_fraction = {self.warn_fraction}",
            f"kill_grace_ms = {round(self.kill_grace_s * 1000)}",
            f'parent_reserve = "{_mib(self.parent_reserve)}M"',
        ]
        for title, limit in [("default", self.default)] + [(f"stages.{n}", l) for n, l in sorted(self.stages.items())]:
            lines += ["", f"[{title}]", f'ceiling = "{_mib(limit.ceiling)}M"', f'minimum = "{_mib(limit.minimum)}M"']
            if limit.thresholds:
                sizes = ", ".join(f'{name} = "{_mib(size)}M"' for name, size in sorted(limit.thresholds.items()))
                lines.append(f"thresholds = {{ {sizes} }}")
        return "\n".join(lines) + "\n"


def _mib(size: int) -> int:
    return max(1, -(-size // MiB))


def load_limits(path: Path | None = None) -> Limits:
    """Read a limits file; any problem is a UsageError naming the file and the key.

    Global keys the file leaves out come from the shipped file; stage tables do not, but a stage's
    thresholds the file leaves out do (they are how the stage behaves, not what it may use).
    """
    shipped = _read_table(DEFAULT_LIMITS_FILE)
    raw = shipped if path is None else _read_table(Path(path))
    merged = {key: shipped[key] for key in GLOBAL_KEYS if key in shipped} | raw
    try:
        limits = _limits_from_table(merged)
        if path is not None:
            limits = _with_shipped_thresholds(limits, _limits_from_table(shipped))
        return replace(limits, source=str(path or DEFAULT_LIMITS_FILE))
    except (SizeError, TypeError, ValueError, KeyError) as exc:
        raise UsageError(f"limits file {path or DEFAULT_LIMITS_FILE}: {exc}") from None


def _with_shipped_thresholds(limits: Limits, shipped: Limits) -> Limits:
    for name, limit in limits.stages.items():
        usual = shipped.stages.get(name)
        if usual is not None and usual.thresholds:
            limits = limits.with_stage(name, replace(limit, thresholds=usual.thresholds | limit.thresholds))
    return limits


def save_limits(path: Path, limits: Limits, header: str = "") -> None:
    from aishorts.ipc.files import atomic_write_bytes

    atomic_write_bytes(Path(path), limits.to_toml(header).encode())


def _read_table(path: Path) -> dict:
    return read_toml(path, "limits file")


def _limits_from_table(raw: dict) -> Limits:
    known = {*GLOBAL_KEYS, "stages"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    poll_ms = _number(raw["poll_ms"], "poll_ms")
    warn = _number(raw["warn_fraction"], "warn_fraction")
    grace_ms = _number(raw["kill_grace_ms"], "kill_grace_ms")
    if not 1 <= poll_ms <= 1000:
        raise ValueError(f"poll_ms must be between 1 and 1000, not {poll_ms}")
    if not 0 < warn <= 1:
        raise ValueError(f"warn_fraction must be in (0, 1], not {warn}")
    if not 0 <= grace_ms <= 10_000:
        raise ValueError(f"kill_grace_ms must be between 0 and 10000, not {grace_ms}")
    default = _stage_limit(raw["default"], "default")
    stages_table = raw.get("stages", {})
    if not isinstance(stages_table, dict):
        raise ValueError("[stages] must be a table of [stages.NAME] tables")
    stages = {name: _stage_limit(table, f"stages.{name}") for name, table in stages_table.items()}
    return Limits(
        poll_s=poll_ms / 1000,
        warn_fraction=float(warn),
        kill_grace_s=grace_ms / 1000,
        parent_reserve=_size(raw["parent_reserve"], "parent_reserve"),
        default=default,
        stages=stages,
    )


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, not {value!r}")
    return float(value)


def _size(value: object, key: str) -> int:
    try:
        return parse_size(value)  # type: ignore[arg-type]
    except SizeError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _stage_limit(table: object, where: str) -> StageLimit:
    if not isinstance(table, dict):
        raise ValueError(f"[{where}] must be a table with ceiling and minimum")
    unknown = set(table) - {"ceiling", "minimum", "thresholds"}
    if unknown:
        raise ValueError(f"[{where}] has unknown key(s) {', '.join(sorted(unknown))}")
    if "ceiling" not in table:
        raise ValueError(f"[{where}] needs a ceiling")
    try:
        ceiling = parse_size(table["ceiling"])
        minimum = parse_size(table.get("minimum", ceiling))
    except SizeError as exc:
        raise ValueError(f"[{where}] {exc}") from None
    if minimum > ceiling:
        raise ValueError(f"[{where}] minimum {format_size(minimum)} is above its ceiling {format_size(ceiling)}")
    return StageLimit(ceiling=ceiling, minimum=minimum, thresholds=_thresholds(table.get("thresholds", {}), where))


def _thresholds(table: object, where: str) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ValueError(f"[{where}] thresholds must be a table of sizes, e.g. {{ lean_below = \"450M\" }}")
    try:
        return {name: parse_size(size) for name, size in table.items()}
    except SizeError as exc:
        raise ValueError(f"[{where}] thresholds: {exc}") from None


def parse_limit_override(text: str, known_stages: tuple[str, ...]) -> tuple[str, int]:
    """`tts=600M` -> ("tts", bytes); unknown stage or bad size is a UsageError."""
    name, sep, size = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"--limit {text!r}: expected STAGE=SIZE, e.g. --limit tts=600M")
    if name not in known_stages:
        raise UsageError(f"--limit {text!r}: unknown stage {name!r}; stages are {', '.join(known_stages)}")
    try:
        return name, parse_size(size)
    except SizeError as exc:
        raise UsageError(f"--limit {text!r}: {exc}") from None

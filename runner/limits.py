"""Memory limits: the defaults in limits.toml, the user's overrides, and the run's budget.

Covers reading and validating limits files, applying `--limit STAGE=SIZE`,
and turning `--max-ram` into each stage's effective ceiling. It does not
watch or kill anything (see `runner.watchdog`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from ipc.sizes import SizeError, format_size, parse_size
from runner.errors import UsageError

DEFAULT_LIMITS_FILE = Path(__file__).resolve().parent.parent / "limits.toml"


@dataclass(frozen=True)
class StageLimit:
    ceiling: int
    minimum: int
    overridden: bool = False
    """Set by --limit: the user's number stands even below `minimum`."""


@dataclass(frozen=True)
class Limits:
    poll_s: float
    warn_fraction: float
    kill_grace_s: float
    parent_reserve: int
    default: StageLimit
    stages: dict[str, StageLimit] = field(default_factory=dict)

    def for_stage(self, name: str) -> StageLimit:
        return self.stages.get(name, self.default)

    def with_override(self, name: str, ceiling: int) -> Limits:
        current = self.for_stage(name)
        updated = StageLimit(ceiling=ceiling, minimum=min(current.minimum, ceiling), overridden=True)
        return replace(self, stages={**self.stages, name: updated})

    def with_stage(self, name: str, limit: StageLimit) -> Limits:
        return replace(self, stages={**self.stages, name: limit})


def load_limits(path: Path | None = None) -> Limits:
    """Read a limits file; any problem is a UsageError naming the file and the key."""
    path = Path(path) if path is not None else DEFAULT_LIMITS_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"limits file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"limits file {path} is not valid TOML: {exc}") from None
    try:
        return _limits_from_table(raw)
    except (SizeError, TypeError, ValueError, KeyError) as exc:
        raise UsageError(f"limits file {path}: {exc}") from None


def _limits_from_table(raw: dict) -> Limits:
    known = {"poll_ms", "warn_fraction", "kill_grace_ms", "parent_reserve", "default", "stages"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    poll_ms = _number(raw.get("poll_ms", 50), "poll_ms")
    warn = _number(raw.get("warn_fraction", 0.85), "warn_fraction")
    grace_ms = _number(raw.get("kill_grace_ms", 100), "kill_grace_ms")
    if not 1 <= poll_ms <= 1000:
        raise ValueError(f"poll_ms must be between 1 and 1000, not {poll_ms}")
    if not 0 < warn <= 1:
        raise ValueError(f"warn_fraction must be in (0, 1], not {warn}")
    if not 0 <= grace_ms <= 10_000:
        raise ValueError(f"kill_grace_ms must be between 0 and 10000, not {grace_ms}")
    default = _stage_limit(raw.get("default", {"ceiling": "1G", "minimum": "64M"}), "default")
    stages_table = raw.get("stages", {})
    if not isinstance(stages_table, dict):
        raise ValueError("[stages] must be a table of [stages.NAME] tables")
    stages = {name: _stage_limit(table, f"stages.{name}") for name, table in stages_table.items()}
    return Limits(
        poll_s=poll_ms / 1000,
        warn_fraction=float(warn),
        kill_grace_s=grace_ms / 1000,
        parent_reserve=_size(raw.get("parent_reserve", "100M"), "parent_reserve"),
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
    unknown = set(table) - {"ceiling", "minimum"}
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
    return StageLimit(ceiling=ceiling, minimum=minimum)


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


def effective_ceiling(limit: StageLimit, stage: str, max_ram: int | None, parent_reserve: int) -> int:
    """The smaller of the stage's ceiling and what --max-ram leaves beside the parent.

    Fails before anything is spawned when the budget leaves less than the stage's
    known minimum (unless the user set this stage's limit themselves).
    """
    if max_ram is None:
        return limit.ceiling
    room = max_ram - parent_reserve
    if room <= 0:
        raise UsageError(
            f"--max-ram {format_size(max_ram)} leaves nothing for stages beside the supervisor's own"
            f" {format_size(parent_reserve)}; give at least {format_size(parent_reserve + limit.minimum)}"
        )
    ceiling = min(limit.ceiling, room)
    if ceiling < limit.minimum and not limit.overridden:
        raise UsageError(
            f"stage {stage} needs at least {format_size(limit.minimum)} but --max-ram {format_size(max_ram)}"
            f" leaves {format_size(room)} after the supervisor's {format_size(parent_reserve)};"
            f" raise --max-ram to {format_size(limit.minimum + parent_reserve)} or more"
        )
    return ceiling

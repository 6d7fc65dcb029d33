"""The shape of the pipeline: which stages exist, what each reads and writes.

The runner plans from these specs without importing any stage code; a stage
process uses them to know which artifacts to decode. Developer pipelines
(balloon stages in tests and benchmarks) are built from the same `StageSpec`.
"""

from __future__ import annotations

import msgspec


class StageSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    module: str
    inputs: tuple[str, ...] = ()
    output: str
    params: msgspec.Raw | None = None
    """Fixed parameters (developer pipelines); None means the run's own for this stage."""


DEFAULT_PIPELINE: tuple[StageSpec, ...] = (
    StageSpec(name="theme", module="aishorts.stages.theme.stage", output="theme"),
    StageSpec(name="script", module="aishorts.stages.script.stage", inputs=("theme",), output="script"),
    StageSpec(name="tts", module="aishorts.stages.tts.stage", inputs=("script",), output="narration"),
    StageSpec(name="broll", module="aishorts.stages.broll.stage", inputs=("script",), output="candidates"),
    StageSpec(name="match", module="aishorts.stages.match.stage", inputs=("script", "broll"), output="matches"),
    StageSpec(name="timeline", module="aishorts.stages.timeline.stage", inputs=("tts", "match", "broll"), output="timeline"),
    StageSpec(name="render", module="aishorts.stages.render.stage", inputs=("timeline",), output="render"),
)

STAGE_NAMES = tuple(spec.name for spec in DEFAULT_PIPELINE)

MOVED_PACKAGES = ("runner", "ipc", "stages", "serve", "cluster")
"""Our folders, installed inside `aishorts` (`aishorts.stages`, ...) so that the wheel has no top-level `stages`
to clash with another project's; they were imported without it before."""
_MOVED_UNDER = __package__.removesuffix("ipc")  # "aishorts." once they moved, "" before


FOLDER_STAGES = ("theme", "script", "tts", "broll", "match", "timeline", "render")
"""Each was one module, `stages.<name>`, before stages/ had a folder per stage: `stages.<name>.stage` now."""


def module_name_now(module: str) -> str:
    """A stage module as an older pipeline file names it (`stages.tts`, `aishorts.stages.tts`) -> its name now."""
    if _MOVED_UNDER and module.split(".")[0] in MOVED_PACKAGES:
        module = _MOVED_UNDER + module
    return module + ".stage" if module in {f"{_MOVED_UNDER}stages.{name}" for name in FOLDER_STAGES} else module


def module_name_before(module: str) -> str:
    """`aishorts.stages.tts.stage` -> `stages.tts`, the name it had before both moves (stamps hash that one)."""
    head, _, rest = module.partition(".")
    if head == "aishorts" and rest.split(".")[0] in MOVED_PACKAGES:
        module = rest
    return module.removesuffix(".stage") if module in {f"stages.{name}.stage" for name in FOLDER_STAGES} else module


def artifact_path(stage: str) -> str:
    """Where a stage's artifact lives, relative to the run directory."""
    return f"{stage}/artifact.json"

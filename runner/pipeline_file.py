"""Developer pipelines: a TOML list of stages, used by tests and benchmarks (e.g. balloon stages).

    [[stage]]
    name = "grow"
    module = "tools.balloon"
    output = "balloon"
    inputs = []                      # names of earlier stages
    ceiling = "300M"                 # optional; else the limits file's
    params = { mb = 400, rate_mb_s = 200 }

The product pipeline is `ipc.pipeline.DEFAULT_PIPELINE`; this only reads files.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from aishorts.ipc.artifacts import ARTIFACT_TYPES
from aishorts.ipc.pipeline import StageSpec, module_name_now
from aishorts.ipc.sizes import SizeError, parse_size
from aishorts.runner.errors import UsageError
from aishorts.runner.limits import Limits, StageLimit
from aishorts.runner.userfiles import read_toml

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def load_pipeline(path: Path, limits: Limits, limits_file_wins: bool = False) -> tuple[tuple[StageSpec, ...], Limits]:
    """The stages of a pipeline file, and `limits` with their ceilings added.

    A stage's ceiling in the pipeline file replaces the default limits.toml's
    entry of the same name, but not that of a limits file the user chose.
    """
    raw = read_toml(path, "pipeline file")
    stages = raw.get("stage")
    if not isinstance(stages, list) or not stages:
        raise UsageError(f"pipeline file {path} needs at least one [[stage]]")
    specs: list[StageSpec] = []
    for table in stages:
        try:
            spec, limit = _stage(table, [s.name for s in specs])
        except (KeyError, TypeError, ValueError, SizeError) as exc:
            raise UsageError(f"pipeline file {path}: {exc}") from None
        specs.append(spec)
        if limit is not None and not (limits_file_wins and spec.name in limits.stages):
            limits = limits.with_stage(spec.name, limit)
    return tuple(specs), limits


def _stage(table: dict, earlier: list[str]) -> tuple[StageSpec, StageLimit | None]:
    name, module, output = table["name"], table["module"], table["output"]
    if not _NAME.match(name) or name in earlier:
        raise ValueError(f"stage name {name!r} must be new, lower-case letters, digits, - or _")
    if not _MODULE.match(module):
        raise ValueError(f"stage {name}: module {module!r} is not a dotted module name")
    if output not in ARTIFACT_TYPES:
        raise ValueError(f"stage {name}: unknown output kind {output!r}; known: {', '.join(ARTIFACT_TYPES)}")
    inputs = tuple(table.get("inputs", ()))
    for upstream in inputs:
        if upstream not in earlier:
            raise ValueError(f"stage {name}: input {upstream!r} is not an earlier stage")
    params = msgspec.Raw(msgspec.json.encode(table.get("params", {})))
    limit = None
    if "ceiling" in table:
        ceiling = parse_size(table["ceiling"])
        limit = StageLimit(ceiling=ceiling, minimum=parse_size(table.get("minimum", 1)))
    spec = StageSpec(name=name, module=module_name_now(module), inputs=inputs, output=output, params=params)
    return spec, limit

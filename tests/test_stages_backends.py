"""The stages' structure: one registry of backends per stage, and no stage importing another.

Cheap checks, no model loaded: the registries are read from module globals and
the imports from the source text.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from aishorts.ipc.params import BrollParams, LlmParams, MatchParams, RenderParams, TtsParams
from aishorts.ipc.pipeline import DEFAULT_PIPELINE
from package_names import importable_name

STAGES_DIR = Path(__file__).resolve().parent.parent / "stages"
STAGES_PACKAGE = importable_name(STAGES_DIR / "__init__.py")  # the name stages/ is imported by
STAGE_MODULES = frozenset(spec.module for spec in DEFAULT_PIPELINE)
HEAVY = ("torch", "transformers", "onnxruntime", "kokoro_onnx", "moviepy", "numpy", "PIL", "scipy", "yt_dlp")

# (module holding BACKENDS, the params Struct, its field naming the backend, the choice rules that are no backend)
REGISTRIES = [
    ("aishorts.stages.tts", TtsParams, "backend", ()),
    ("aishorts.stages.llm", LlmParams, "backend", ("auto",)),
    ("aishorts.stages.match", MatchParams, "scorer", ("auto",)),
    ("aishorts.stages.broll", BrollParams, "source", ("auto",)),
    ("aishorts.stages.render", RenderParams, "renderer", ()),
]


@pytest.mark.parametrize(("module", "struct", "field", "rules"), REGISTRIES, ids=[r[0] for r in REGISTRIES])
def test_each_registry_holds_exactly_the_backends_its_params_name(module, struct, field, rules):
    names = get_args(get_type_hints(struct)[field])
    assert names, f"{struct.__name__}.{field} is not a Literal"
    assert set(rules) <= set(names)
    registry = importlib.import_module(module).BACKENDS
    assert set(registry) == set(names) - set(rules)


def test_reading_the_registries_loads_no_model_library():
    code = (
        "import importlib, json, sys\n"
        f"keys = {{m: sorted(importlib.import_module(m).BACKENDS) for m in {[r[0] for r in REGISTRIES]!r}}}\n"
        f"print(json.dumps([keys, sorted(h for h in {HEAVY!r} if h in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=STAGES_DIR.parent)
    keys, heavy = json.loads(out.stdout)
    assert heavy == []
    assert all(keys.values())


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports too), as absolute dotted names.

    `from aishorts.stages import broll` counts as importing `stages.broll`.
    """
    package = STAGES_PACKAGE
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def stage_modules_in(names: set[str]) -> set[str]:
    return {stage for stage in STAGE_MODULES if any(n == stage or n.startswith(stage + ".") for n in names)}


def stage_sources() -> dict[str, Path]:
    return {importable_name(path): path for path in sorted(STAGES_DIR.glob("*.py")) if path.stem != "__init__"}


def test_the_pipeline_names_seven_stage_modules_that_exist():
    assert {"aishorts.stages.theme", "aishorts.stages.script", "aishorts.stages.render"} <= STAGE_MODULES
    assert STAGE_MODULES <= set(stage_sources())


def test_no_stage_module_imports_another_stage_module():
    offences = {
        module: sorted(stage_modules_in(imported_modules(path)) - {module})
        for module, path in stage_sources().items()
        if module in STAGE_MODULES
    }
    assert {module: others for module, others in offences.items() if others} == {}


def test_no_helper_module_imports_a_stage_module():
    """Otherwise a stage would reach another one through the helper."""
    offences = {
        module: sorted(stage_modules_in(imported_modules(path)))
        for module, path in stage_sources().items()
        if module not in STAGE_MODULES
    }
    assert {module: stages for module, stages in offences.items() if stages} == {}


def test_the_import_reader_sees_function_level_and_package_relative_imports(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "from aishorts.stages import harness\n"
        "def late():\n"
        "    from aishorts.stages.render_moviepy import render_moviepy\n"
        "    import aishorts.stages.theme\n"
        "    from . import script\n"
    )
    names = imported_modules(source)
    assert {"aishorts.stages.harness", "aishorts.stages.render_moviepy", "aishorts.stages.theme", "aishorts.stages.script"} <= names
    assert stage_modules_in(names) == {"aishorts.stages.theme", "aishorts.stages.script"}

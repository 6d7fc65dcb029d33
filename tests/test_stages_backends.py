"""The stages' structure: a folder per stage, one registry of backends per stage, no stage importing another.

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
STAGE_FOLDERS = frozenset(module.rpartition(".")[0] for module in STAGE_MODULES)  # aishorts.stages.tts, ...
HARNESS = f"{STAGES_PACKAGE}.harness"
HEAVY = ("torch", "transformers", "onnxruntime", "kokoro_onnx", "moviepy", "numpy", "PIL", "scipy", "yt_dlp")

# (module holding BACKENDS, the params Struct, its field naming the backend, the choice rules that are no backend)
REGISTRIES = [
    ("aishorts.stages.tts.stage", TtsParams, "backend", ()),
    ("aishorts.stages.llm.chat", LlmParams, "backend", ("auto",)),
    ("aishorts.stages.match.stage", MatchParams, "scorer", ("auto",)),
    ("aishorts.stages.broll.stage", BrollParams, "source", ("auto",)),
    ("aishorts.stages.render.stage", RenderParams, "renderer", ()),
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

    `from aishorts.stages.tts import voices` counts as importing `aishorts.stages.tts.voices`.
    """
    package = importable_name(path).rpartition(".")[0]
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


def stage_folders_in(names: set[str]) -> set[str]:
    return {folder for folder in STAGE_FOLDERS if any(n == folder or n.startswith(folder + ".") for n in names)}


def folder_of_module(module: str) -> str:
    """`aishorts.stages.tts.voices` -> `aishorts.stages.tts`; the harness -> `aishorts.stages`."""
    return module.rpartition(".")[0]


def stage_sources() -> dict[str, Path]:
    return {importable_name(path): path for path in sorted(STAGES_DIR.rglob("*.py")) if path.stem != "__init__"}


def test_the_pipeline_names_seven_stage_modules_that_exist_each_in_its_own_folder():
    assert {"aishorts.stages.theme.stage", "aishorts.stages.script.stage", "aishorts.stages.render.stage"} <= STAGE_MODULES
    assert STAGE_MODULES <= set(stage_sources())
    assert len(STAGE_FOLDERS) == len(STAGE_MODULES) == 7
    assert all(module.endswith(".stage") for module in STAGE_MODULES)


def test_no_stage_folder_imports_another_stage_folder():
    offences = {
        module: sorted(stage_folders_in(imported_modules(path)) - {folder_of_module(module)})
        for module, path in stage_sources().items()
    }
    assert {module: others for module, others in offences.items() if others} == {}


def test_no_helper_imports_a_stage_module_or_the_process_entry():
    """A helper gets StageContext and StageError from stages/common/context.py, never from the harness."""
    offences = {
        module: sorted(n for n in imported_modules(path) if n in STAGE_MODULES or n == HARNESS
                       or n.startswith(HARNESS + "."))
        for module, path in stage_sources().items()
        if module not in STAGE_MODULES and module != HARNESS
    }
    assert {module: found for module, found in offences.items() if found} == {}


def test_the_shared_folders_import_no_stage_folder():
    shared = {module: path for module, path in stage_sources().items()
              if folder_of_module(module) not in STAGE_FOLDERS}
    assert {"aishorts.stages.common.writing", "aishorts.stages.llm.chat", "aishorts.stages.grounding.checks"} <= set(shared)
    offences = {module: sorted(stage_folders_in(imported_modules(path))) for module, path in shared.items()}
    assert {module: found for module, found in offences.items() if found} == {}


def test_the_import_reader_sees_function_level_and_package_relative_imports():
    source = STAGES_DIR / "tts" / "voices.py"  # read as the module it is, for its relative imports
    sample = source.with_name("_import_reader_sample.py")
    sample.write_text(
        "from aishorts.stages import harness\n"
        "def late():\n"
        "    from aishorts.stages.render.moviepy_renderer import render_moviepy\n"
        "    import aishorts.stages.theme.stage\n"
        "    from ..script import stage\n"
        "    from . import g2p\n"
    )
    try:
        names = imported_modules(sample)
    finally:
        sample.unlink()
    assert {"aishorts.stages.harness", "aishorts.stages.render.moviepy_renderer", "aishorts.stages.theme.stage",
            "aishorts.stages.script.stage", "aishorts.stages.tts.g2p"} <= names
    assert stage_folders_in(names) == {"aishorts.stages.render", "aishorts.stages.theme", "aishorts.stages.script",
                                       "aishorts.stages.tts"}

"""The tree is the architecture: the supervisor never imports stage code or heavy libraries, at any depth.

Read from the source (every `import` statement, inside functions too), not
from `sys.modules`, so a lazy import in a rarely taken branch is caught as
surely as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_SUPERVISOR = {
    "stages", "tools", "torch", "numpy", "transformers", "onnxruntime", "moviepy", "kokoro_onnx", "kokoro",
    "sentence_transformers", "llama_cpp", "xllamacpp", "ray", "fastapi", "uvicorn", "PIL", "scipy", "cv2",
}
BASELINE_LOADED_BY_NAME = {"tools.inprocess", "serve.cli", "cluster.driver"}
"""`--isolation none` (the old single-process design) is loaded by name, and only when asked for."""


def supervisor_modules() -> list[Path]:
    return sorted(p for folder in ("runner", "ipc") for p in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules_loaded_by_name(path: Path) -> list[str]:
    """Arguments of importlib.import_module / __import__ calls: a literal module name, or '<dynamic>'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                found.append(arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "<dynamic>")
    return found


@pytest.mark.parametrize("path", supervisor_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_supervisor_module_imports_stage_code_tools_or_heavy_libraries(path):
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_SUPERVISOR)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", supervisor_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_single_process_baseline_is_loaded_by_name(path):
    assert set(modules_loaded_by_name(path)) <= BASELINE_LOADED_BY_NAME


def test_the_checks_see_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from stages import harness\n    import importlib\n    importlib.import_module(name)\n")
    assert "stages" in imported_modules(sample)
    assert modules_loaded_by_name(sample) == ["<dynamic>"]


def test_the_supervisor_modules_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in supervisor_modules()}
    assert {"runner/cli.py", "runner/run.py", "runner/watchdog.py", "ipc/artifacts.py"} <= names

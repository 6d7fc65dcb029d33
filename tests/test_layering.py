"""The tree is the architecture: the supervisor never imports stage code, front ends, tools or heavy libraries, at
any depth; a stage never imports the supervisor or a front end; no import circle anywhere in the product.

Read from the source (every `import` statement, inside functions too), not
from `sys.modules`, so a lazy import in a rarely taken branch is caught as
surely as one at the top of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from package_names import folder_of, importable_name, renamed_folders, shipped_packages

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {
    "torch", "numpy", "transformers", "onnxruntime", "moviepy", "kokoro_onnx", "kokoro", "sentence_transformers",
    "llama_cpp", "xllamacpp", "ray", "fastapi", "uvicorn", "PIL", "scipy", "cv2",
}
FRONT_ENDS = {"aishorts", "serve", "cluster"}
"""Above the supervisor: the entry that hands it its extensions, the web page and API, batches across machines."""
FORBIDDEN_IN_SUPERVISOR = {"stages", "tools"} | FRONT_ENDS | HEAVY
FORBIDDEN_IN_FRONT_END = {"serve": {"stages", "tools", "aishorts", "cluster"},
                          "cluster": {"stages", "tools", "aishorts", "serve"}}
"""The front ends use the supervisor, never stage code, developer tools, the entry above them, or each other."""
FORBIDDEN_IN_STAGES = {"runner", "tools"} | FRONT_ENDS
"""A stage meets the supervisor only through `ipc` (its call file, its artifact, its progress pipe)."""
PACKAGES = tuple(sorted({folder.split("/")[0] for folder in shipped_packages().values()}))
"""Every folder the wheel installs: the supervisor, its contract, the stages and the front ends."""


def supervisor_modules() -> list[Path]:
    return sorted(p for folder in ("runner", "ipc") for p in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # a submodule, or just a name
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
    bad = sorted(m for m in imported_modules(path) if folder_of(m) in FORBIDDEN_IN_SUPERVISOR)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", supervisor_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_supervisor_loads_nothing_by_name(path):
    assert not modules_loaded_by_name(path), "the front ends hand the supervisor what it runs (aishorts.main)"


def front_end_modules() -> list[Path]:
    return sorted(p for folder in FORBIDDEN_IN_FRONT_END for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", front_end_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_front_end_imports_stage_code_tools_the_entry_or_another_front_end(path):
    forbidden = FORBIDDEN_IN_FRONT_END[path.relative_to(ROOT).parts[0]]
    loaded = imported_modules(path) | set(modules_loaded_by_name(path))
    bad = sorted(m for m in loaded if folder_of(m) in forbidden)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", sorted((ROOT / "stages").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_stage_imports_the_supervisor_a_front_end_or_tools(path):
    loaded = imported_modules(path) | set(modules_loaded_by_name(path))
    bad = sorted(m for m in loaded if folder_of(m) in FORBIDDEN_IN_STAGES)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def product_modules() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_product_imports_its_own_modules_by_their_whole_name(path):
    """These checks read absolute names: a relative import (`from . import x`) would pass by them unseen."""
    relative = [node.module or "." for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
                if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert not relative, f"{path.relative_to(ROOT)} imports {relative} relatively; name them from aishorts."


def test_every_product_folder_is_checked_for_circles():
    assert set(PACKAGES) == {"aishorts", "runner", "ipc", "stages", "serve", "cluster"}


def import_graph() -> dict[str, set[str]]:
    """Each module of ours and the modules of ours it imports, at any depth of its code or by name."""
    paths = {importable_name(p): p for p in product_modules()}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = imported_modules(path) | set(modules_loaded_by_name(path))
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circle_anywhere_in_the_product():
    assert import_circles(import_graph()) == []


def test_an_import_circle_is_found():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_tools_are_not_shipped_and_the_entry_is_above_the_supervisor():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "tools" not in project["tool"]["setuptools"]["packages"]
    assert project["project"]["scripts"]["aishorts-runner"] == "aishorts.main:entry"


def test_the_checks_see_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from aishorts.stages import harness\n    import importlib\n    importlib.import_module(name)\n")
    assert "stages" in {folder_of(m) for m in imported_modules(sample)}
    assert modules_loaded_by_name(sample) == ["<dynamic>"]


def test_the_supervisor_modules_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in supervisor_modules()}
    assert {"runner/cli.py", "runner/run.py", "runner/watchdog.py", "ipc/artifacts.py"} <= names


# --- the names our code is imported and run by: those the wheel installs (pyproject.toml) --------------------

EMBEDDED = (
    re.compile(r"(?<![\w.])-m\s+([A-Za-z_][\w.]*)"),  # "python -m aishorts.stages.tts.voices fetch"
    re.compile(r"(['\"])-m\1\s*,\s*['\"]([A-Za-z_][\w.]*)"),  # "[sys.executable, '-m', 'stages.broll']" in code run by -c
    re.compile(r"(?<![\w.])from\s+([A-Za-z_][\w.]*)\s+import\b"),
    re.compile(r"(?<![\w.])import\s+((?:[A-Za-z_][\w.]*\s*,\s*)*[A-Za-z_][\w.]*)"),
    re.compile(r"(?<![\w.])module\s*=\s*['\"]([A-Za-z_][\w.]*)"),  # a pipeline file's stage
)


def repository_modules() -> list[Path]:
    folders = [p for p in sorted(ROOT.iterdir()) if p.is_dir() and not p.name.startswith(".")
               and ((p / "__init__.py").exists() or p.name == "tests")]
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def modules_run_by_name(path: Path) -> set[str]:
    """Modules started or named as text: the argument after '-m', a stage's `module=`, and the imports and -m
    of code and pipeline files held in strings (run by `python -c`, written by tests)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.List, ast.Tuple)):
            for before, value in zip(node.elts, node.elts[1:]):
                if isinstance(before, ast.Constant) and before.value == "-m" and isinstance(value, ast.Constant):
                    names.add(str(value.value))
        elif isinstance(node, ast.keyword) and node.arg == "module" and isinstance(node.value, ast.Constant):
            names.add(str(node.value.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for pattern in EMBEDDED:
                for match in pattern.finditer(node.value):
                    names.update(n.strip() for n in match.group(match.lastindex).split(","))
    return names


def named_by_folder(path: Path, renamed: dict[str, str]) -> list[str]:
    """The modules of ours `path` imports, loads or runs by their folder's name where the wheel has another."""
    named = imported_modules(path) | set(modules_loaded_by_name(path)) | modules_run_by_name(path)
    return sorted(m for m in named if m.split(".")[0] in renamed)


@pytest.mark.parametrize("path", repository_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_our_modules_are_imported_and_run_by_the_names_the_wheel_installs(path):
    """An installed wheel has no top-level `runner` or `stages` (they would clash with other projects'): code
    that imports or starts one by its folder's name works in a checkout only, or runs another project's."""
    renamed = renamed_folders()
    bad = named_by_folder(path, renamed)
    assert not bad, f"{path.relative_to(ROOT)} names {bad}; the wheel installs them as {sorted(set(renamed.values()))}"


def test_a_module_named_by_its_folder_is_found(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text((  # `@runner`: the folders are named here without this file naming them
        "import subprocess, sys\n"
        "from aishorts.runner.cli import main\n"
        "def f():\n"
        "    from @runner import session\n"
        "    subprocess.run([sys.executable, '-m', '@stages.voices', 'list'])\n"
        "    code = 'import sys, @ipc.params; print(1)'\n"
        "    spec = StageSpec(name='tts', module='@stages.tts', output='narration')\n"
        "    toml = 'module = \"@cluster.task\"'\n"
    ).replace("@", ""))
    renamed = renamed_folders({"packages": ["aishorts", "aishorts.runner", "aishorts.ipc", "aishorts.stages",
                                            "aishorts.cluster"],
                               "package-dir": {"aishorts.runner": "runner", "aishorts.ipc": "ipc",
                                               "aishorts.stages": "stages", "aishorts.cluster": "cluster"}})
    assert renamed == {"runner": "aishorts.runner", "ipc": "aishorts.ipc", "stages": "aishorts.stages",
                       "cluster": "aishorts.cluster"}
    assert named_by_folder(sample, renamed) == [name.replace("@", "") for name in (
        "@cluster.task", "@ipc.params", "@runner", "@runner.session", "@stages.tts", "@stages.voices")]


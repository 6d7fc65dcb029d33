"""The name the code in each folder of the repository is imported by: the one the wheel installs it under.

Read from pyproject.toml (`[tool.setuptools]` packages and package-dir), so the layering checks and the
probes in the tests name our modules as the product does, wherever the folders are installed. Not
responsible for checking anything itself (tests/test_layering.py does).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shipped_packages(setuptools: dict | None = None) -> dict[str, str]:
    """Each package the wheel installs -> its folder, relative to the repository ('aishorts.runner' -> 'runner')."""
    if setuptools is None:
        setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    found = {}
    for package in setuptools["packages"]:
        # as setuptools does: the longest mapped prefix of the name gives its folder
        prefix = max((p for p in mapped if p == "" or package == p or package.startswith(p + ".")), key=len,
                     default=None)
        if prefix is None:
            found[package] = package.replace(".", "/")
        else:
            rest = package[len(prefix):].lstrip(".").replace(".", "/")
            found[package] = "/".join(part for part in (mapped[prefix].strip("/"), rest) if part)
    return found


def renamed_folders(setuptools: dict | None = None) -> dict[str, str]:
    """Top-level folders installed under another name -> that name ('runner' -> 'aishorts.runner')."""
    return {folder: package for package, folder in shipped_packages(setuptools).items()
            if "/" not in folder and package != folder}


def importable_name(path: Path) -> str:
    """'runner/cli.py' -> the name it is imported by ('aishorts.runner.cli'); tools/ and tests/ by their own."""
    relative = path.resolve().relative_to(ROOT).with_suffix("")
    by_folder = {folder: package for package, folder in shipped_packages().items()}
    folder = relative.parent.as_posix()
    package = by_folder.get(folder, folder.replace("/", "."))
    return package if relative.name == "__init__" else f"{package}.{relative.name}"


def folder_of(module: str) -> str:
    """The top-level folder of the repository a module name of ours lives in, by the name it is imported by or
    by its folder's ('aishorts.runner.cli', 'runner.cli' -> 'runner'; 'aishorts.main' -> 'aishorts'); another
    project's module: its first part ('torch.nn' -> 'torch')."""
    packages = shipped_packages()
    prefix = max((p for p in packages if module == p or module.startswith(p + ".")), key=len, default=None)
    return packages[prefix].split("/")[0] if prefix else module.split(".")[0]

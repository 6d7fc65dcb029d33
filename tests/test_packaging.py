"""What the wheel installs: the product under the one name `aishorts`, nothing that clashes, no developer tools.

Built with pip from the checkout and unpacked into a folder of its own, as an install would place it; its
code then runs beside another project's top-level `runner`, `stages`, ... (written here), from anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLASHING = ("runner", "ipc", "stages", "serve", "cluster", "tools")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the checkout's files as git sees them: a stale build/ folder of the checkout (setuptools
    builds in the source tree) must not leak an older layout into the wheel."""
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    folder = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(folder), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return next(folder.glob("aishorts_runner-*.whl"))


def test_the_wheel_installs_only_the_aishorts_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"aishorts", wheel.name.split("-py")[0] + ".dist-info"}
    for folder in ("runner", "ipc", "stages", "serve", "cluster"):
        assert f"aishorts/{folder}/__init__.py" in names
    assert "aishorts/runner/limits.toml" in names and "aishorts/serve/static/index.html" in names
    folders = {str(path.parent.relative_to(ROOT)) for top in CLASHING[:-1] for path in ROOT.glob(f"{top}/**/__init__.py")}
    missing = {f"aishorts/{folder}/__init__.py" for folder in folders} - set(names)
    assert not missing, f"add their packages to pyproject.toml's [tool.setuptools] packages: {sorted(missing)}"
    data_files = {str(path.relative_to(ROOT)) for path in ROOT.glob("stages/*/*.toml")}
    assert data_files and {f"aishorts/{name}" for name in data_files} <= set(names), "every stage's data file ships"
    assert not [name for name in names if name.startswith("aishorts/tools/")]


def test_an_installed_wheel_runs_a_stage_beside_another_projects_runner_and_stages(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    others = tmp_path / "others"  # another project's top-level packages, ahead of ours on the path
    for name in CLASHING:
        (others / name).mkdir(parents=True)
        (others / name / "__init__.py").write_text(f"raise ImportError('another project\'s {name}')\n")
    pipeline = tmp_path / "p.toml"
    pipeline.write_text('[[stage]]\nname = "theme"\nmodule = "aishorts.stages.theme.stage"\noutput = "theme"\n'
                        'params = { topic = "Why octopuses have three hearts" }\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(others), str(site)))}  # not the checkout
    where = subprocess.run([sys.executable, "-c", "import aishorts, aishorts.runner.limits as l;"
                            " print(l.__file__); print(aishorts.__path__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert where[0].startswith(str(site / "aishorts" / "runner"))
    assert where[1] == repr([str(site / "aishorts")])  # an installed wheel looks nowhere else
    run = subprocess.run([sys.executable, "-m", "aishorts", "--pipeline", str(pipeline), "--run-dir",
                          str(tmp_path / "run")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "run" / "theme" / "artifact.json").is_file()
    stage_log = "".join(p.read_text() for p in (tmp_path / "run").rglob("*.log"))
    assert "another project" not in stage_log + run.stderr


def test_a_checkout_finds_its_folders_as_aishorts_packages(tmp_path):
    """PYTHONPATH=the repository (or the editable install): aishorts.runner is the checkout's runner/."""
    code = "import aishorts.runner.cli as c, aishorts.stages.harness as h; print(c.__file__); print(h.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == [str(ROOT / "runner" / "cli.py"), str(ROOT / "stages" / "harness.py")]

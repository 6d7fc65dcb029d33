"""The benchmark suite runs (a reduced smoke): every runner-only section writes its table and raw figures.

Targets are not asserted here: figures on a shared CI machine are for BENCHMARKS.md, not for pass/fail.
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_quick_benchmark_writes_markdown_and_json(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--sections", "startup,watchdog,release",
         "--out", str(tmp_path / "B.md"), "--json", str(tmp_path / "b.json")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    sections = {row["section"] for row in data["rows"]}
    assert sections == {"start-up", "watchdog", "release"}
    assert data["machine"]["cores"] >= 1
    markdown = (tmp_path / "B.md").read_text()
    assert "| `--help` wall time (median) |" in markdown and "< 0.3 s" in markdown


def test_unknown_section_is_refused():
    out = subprocess.run([sys.executable, "-m", "tools.bench", "--sections", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown section" in out.stderr

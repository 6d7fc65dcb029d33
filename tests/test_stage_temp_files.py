"""A stage's temporary files stay in its own folder and are gone when it ends: nothing is left in /tmp.

phonemizer copies libespeak-ng.so (660 KB) into a new temporary folder for each
espeak voice it opens; every tts run used to leave two such copies in /tmp.
The tts stage runs here as the supervisor runs it, a fresh interpreter, with
TMPDIR pointing at an empty folder that must stay empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aishorts.ipc.artifacts import Script
from aishorts.ipc.files import write_struct
from aishorts.ipc.params import TtsParams
from aishorts.ipc.pipeline import artifact_path
from tests.conftest import stage_call

pytestmark = pytest.mark.slow


def test_a_tts_run_leaves_no_espeak_copies_in_tmp_nor_a_temp_folder_in_the_run(tmp_path):
    run_dir = tmp_path / "run"
    script = Script(title="t", hook="Octopuses have three hearts.", body=["Their blood is blue."], cta="",
                    broll_queries=["ocean"], language="en-us")
    write_struct(run_dir / artifact_path("script"), script)
    (run_dir / "tts").mkdir()
    call_path = run_dir / "tts" / "call.json"
    write_struct(call_path, stage_call(run_dir, "tts", TtsParams(voice="jm_kumo")))
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()

    out = subprocess.run([sys.executable, "-m", "aishorts.stages.tts.stage", str(call_path)], capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(system_tmp)}, timeout=600)

    assert out.returncode == 0, out.stderr[-3000:]
    assert (run_dir / "tts" / "narration.wav").exists()
    assert list(system_tmp.rglob("*")) == []
    assert not (run_dir / "tts" / ".tmp").exists()
    assert "Exception ignored" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert not [p for p in run_dir.rglob("*") if "espeak" in p.name]

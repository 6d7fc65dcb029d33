"""A batch of 10,000 shorts stopped by SIGTERM exits at once, with a summary a person can read.

The closing table once listed every row (rich renders about a row a
millisecond): the stages stopped in 0.13 s and the process exited 5 to 11 s
later. Now the table shows the shorts that started and one line counts the
rest; batch.json still lists every row.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.runner_helpers import RUNNER, balloon_pipeline, wait_for

pytestmark = pytest.mark.slow


def test_a_huge_batch_stopped_by_sigterm_exits_promptly_and_lists_every_row_in_batch_json(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 5, "hold_s": 60}})
    topics = tmp_path / "topics.txt"
    topics.write_text("".join(f"topic number {i}\n" for i in range(10_000)))
    batch = tmp_path / "batch"
    proc = subprocess.Popen([*RUNNER, "--pipeline", str(pipeline), "--topics-file", str(topics), "--jobs", "2",
                             "--run-dir", str(batch)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert wait_for(lambda: len(list(batch.glob("*/a/call.json"))) == 2, timeout=120)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert took < 5.0, f"exited {took:.1f} s after SIGTERM"
    assert len(out.splitlines()) < 50 and "9998 shorts were not started" in out
    items = json.loads((batch / "batch.json").read_text())["items"]
    assert len(items) == 10_000 and sum(item["message"] == "not started" for item in items) == 9998

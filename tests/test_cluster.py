"""`--cluster`: a batch across a real two-node Ray cluster on 127.0.0.1, started and torn down by these tests.

The head offers 1 GiB of Ray memory and the second node 600 MiB, one CPU each. Ray admits each short by the
memory its budget needs; the runner's watchdog still stops each stage at its ceiling on whichever node it runs.
The cluster is stopped through Ray's own API (its processes by pid), never by `ray stop`.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from aishorts.ipc.sizes import MiB

from tests.runner_helpers import RUNNER, balloon_pipeline, run_cli, wait_for

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray swaps 127.0.0.1 for the host's address
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    os.environ["RAY_TMPDIR"] = temp_dir  # where Ray notes the cluster's address: ours, not the shared /tmp/ray
    os.makedirs(os.path.join(temp_dir, "ray"))
    scratch = tempfile.mkdtemp(prefix="aishorts-node-")
    os.environ["AISHORTS_CLUSTER_SCRATCH"] = scratch  # read on the nodes, which inherit this environment
    node = dict(num_cpus=1, node_ip_address="127.0.0.1", temp_dir=temp_dir, object_store_memory=80 * MiB)
    started = ray_cluster_utils.Cluster(initialize_head=True,
                                        head_node_args=dict(node, memory=1024 * MiB, include_dashboard=False))
    started.add_node(**node, memory=600 * MiB)
    started.scratch = Path(scratch)
    try:
        yield started
    finally:
        started.shutdown()
        os.environ.pop("AISHORTS_CLUSTER_SCRATCH")
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
        os.environ.pop("RAY_TMPDIR")
        assert wait_for(lambda: not _processes_under(temp_dir), timeout=30, step=0.5), _processes_under(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _processes_under(temp_dir: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if any(temp_dir in part for part in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _pipeline(tmp_path, **grow):
    return balloon_pipeline(
        tmp_path / "p.toml",
        {"name": "light", "ceiling": "100M", "params": {"mb": 5}},
        {"name": "grow", "ceiling": "200M", "params": {"mb": 100, "rate_mb_s": 400, **grow}},
    )


def _stage_statuses(run_dir) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((run_dir / "report.json").read_text())["stages"]}


def test_a_batch_runs_across_the_nodes_by_memory_reports_an_oom_and_a_rerun_resumes_it(cluster, tmp_path):
    batch = tmp_path / "shorts.jsonl"
    rows = [
        '{"topic": "fits on either node"}',
        '{"topic": "only the head can hold it", "limit": "grow=700M"}',
        '{"topic": "its own limit is too small", "limit": "grow=60M"}',
    ]
    batch.write_text("\n".join(rows) + "\n")
    batch_dir = tmp_path / "batch"
    args = ("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--cluster", cluster.address,
            "--run-dir", batch_dir, "--json")
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    assert report == json.loads((batch_dir / "batch.json").read_text())
    assert report["cluster"] == cluster.address
    assert [(i["line"], i["status"], i["failed_stage"]) for i in report["items"]] == [
        (1, "done", None), (2, "done", None), (3, "oom", "grow")]
    assert all(item["node"].startswith("127.0.0.1/") for item in report["items"])
    # 700M ceiling + the supervisor's 100M only fit the head's 1 GiB, never the 600 MiB node
    assert report["items"][1]["node"] == f"127.0.0.1/{cluster.head_node.node_id[:8]}"
    assert "ceiling 60M" in report["items"][2]["message"] and "--limit grow=" in report["items"][2]["rerun_command"]
    assert all(item["wall_s"] > 0 and item["peak_rss_bytes"] > 100 * MiB for item in report["items"])
    # each task's stage events reached the driver's own display (plain lines on stderr under --json)
    lines = out.stderr.splitlines()
    assert any(line.startswith("[03@127.0.0.1/") and ":grow] oom: peak" in line for line in lines), out.stderr
    assert any(line.startswith("[02@127.0.0.1/") and ":grow] started (ceiling 700M)" in line for line in lines)

    rows[2] = '{"topic": "its own limit is too small", "limit": "grow=200M"}'  # as batch.json advised
    batch.write_text("\n".join(rows) + "\n")
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert [item["status"] for item in items] == ["done", "done", "done"]
    first, second, third = (batch_dir / os.path.basename(item["run_dir"]) for item in items)
    assert _stage_statuses(first) == _stage_statuses(second) == {"light": "skipped", "grow": "skipped"}
    assert _stage_statuses(third) == {"light": "skipped", "grow": "done"}


def test_by_stage_each_stage_is_its_own_task_placed_by_its_own_ceiling(cluster, tmp_path):
    batch = tmp_path / "shorts.jsonl"
    batch.write_text('{"topic": "light everywhere"}\n{"topic": "a heavy stage", "limit": "grow=700M"}\n')
    batch_dir = tmp_path / "batch"
    args = ("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--cluster", cluster.address,
            "--cluster-unit", "stage", "--run-dir", batch_dir, "--json")
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert [item["status"] for item in items] == ["done", "done"]
    # each stage names the node it ran on; the 700M stage (+100M) fits only the head's 1 GiB
    assert [place.split("@")[0] for place in items[1]["node"].split()] == ["light", "grow"]
    assert f"grow@127.0.0.1/{cluster.head_node.node_id[:8]}" in items[1]["node"].split()
    assert 100 * MiB < items[1]["peak_rss_bytes"] < 700 * MiB
    assert _stage_statuses(batch_dir / "02-a-heavy-stage") == {"light": "done", "grow": "done"}

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _stage_statuses(batch_dir / "02-a-heavy-stage") == {"light": "skipped", "grow": "skipped"}


def test_without_a_shared_disk_the_deliverables_come_back_to_the_driver_and_a_rerun_keeps_them(cluster, tmp_path):
    batch = tmp_path / "shorts.txt"
    batch.write_text("sent back\n")
    batch_dir = tmp_path / "batch"
    env = {**os.environ, "AISHORTS_CLUSTER_SHARED": "never"}
    args = ("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--cluster", cluster.address,
            "--run-dir", batch_dir, "--json")
    out = run_cli(*args, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    item = json.loads(out.stdout)["items"][0]
    run_dir = batch_dir / "01-sent-back"
    assert (item["status"], item["run_dir"]) == ("done", str(run_dir))
    # the stages ran in the node's scratch directory; the driver's run directory holds what came back
    assert not (run_dir / "grow").exists()
    on_node = [p for p in cluster.scratch.iterdir() if p.name.endswith("-01-sent-back")]
    assert len(on_node) == 1 and (on_node[0] / "grow" / "stamp.json").exists()
    assert json.loads((run_dir / "report.json").read_text())["status"] == "done"
    assert json.loads((run_dir / "run.json").read_text())["params"]["theme"]["topic"] == "sent back"

    again = run_cli(*args, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "0 short(s) submitted, 1 already done" in again.stderr
    assert json.loads(again.stdout)["items"][0]["node"] == item["node"]


def test_a_short_no_node_can_hold_is_refused_before_anything_is_submitted(cluster, tmp_path):
    batch = tmp_path / "shorts.jsonl"
    batch.write_text('{"topic": "small"}\n{"topic": "too big for any node", "limit": "grow=2G"}\n')
    batch_dir = tmp_path / "batch"
    out = run_cli("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--cluster", cluster.address,
                  "--run-dir", batch_dir, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    message = out.stderr.strip().splitlines()[-1]
    assert f"{batch}, line 2" in message and "stage grow needs 2.10G" in message
    assert f"largest node, 127.0.0.1/{cluster.head_node.node_id[:8]}, offers 1.00G" in message
    assert not batch_dir.exists()


def test_a_worker_killed_mid_stage_takes_its_stage_tree_along_and_ray_retries_the_short(cluster, tmp_path):
    # grows slowly, with a child of its own (as ffmpeg under render), so the kill lands mid-stage
    pipeline = _pipeline(tmp_path, mb=60, rate_mb_s=10, child_mb=30)
    proc, batch_dir = _batch_on_cluster(cluster, tmp_path, "killed once", pipeline)
    stage = _running_stage(proc, batch_dir / "01-killed-once" / "grow", with_child=True)
    tree = [stage, *_children(stage)]
    worker = stage.parent()
    assert worker.name().startswith("ray::") or "default_worker" in " ".join(worker.cmdline())
    worker.send_signal(signal.SIGKILL)
    assert wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree), timeout=10)

    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert [item["status"] for item in json.loads(stdout)["items"]] == ["done"]
    grow_dir = batch_dir / "01-killed-once" / "grow"
    assert (grow_dir / "stage.previous.log").exists()  # the killed attempt's log, kept by the retry that finished
    assert _stage_statuses(batch_dir / "01-killed-once")["grow"] == "done"


def test_ctrl_c_on_the_driver_stops_the_shorts_on_their_nodes_and_writes_the_batch_report(cluster, tmp_path):
    pipeline = _pipeline(tmp_path, mb=100, rate_mb_s=5)  # 20 s: the stop lands mid-stage
    proc, batch_dir = _batch_on_cluster(cluster, tmp_path, "stopped midway", pipeline)
    stage = _running_stage(proc, batch_dir / "01-stopped-midway" / "grow", with_child=False)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    item = json.loads(stdout)["items"][0]
    assert (item["status"], item["failed_stage"]) == ("interrupted", "grow")
    assert wait_for(lambda: not stage.is_running() or stage.status() == psutil.STATUS_ZOMBIE, timeout=10)
    assert _stage_statuses(batch_dir / "01-stopped-midway") == {"light": "done", "grow": "interrupted"}


def _batch_on_cluster(cluster, tmp_path: Path, topic: str, pipeline: Path) -> tuple[psutil.Popen, Path]:
    """A batch of one short on `topic` started on the cluster (its report as JSON on stdout): its driver and its folder."""
    batch = tmp_path / "shorts.txt"
    batch.write_text(topic + "\n")
    batch_dir = tmp_path / "batch"
    proc = psutil.Popen([*RUNNER, "--pipeline", pipeline, "--topics-file", batch, "--cluster", cluster.address,
                         "--run-dir", batch_dir, "--json"],
                        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, batch_dir


def _running_stage(proc: psutil.Popen, stage_dir: Path, with_child: bool) -> psutil.Process:
    """The process of the stage whose call file is in `stage_dir`, once it runs (with a child, if asked)."""
    call_file = str(stage_dir / "call.json")
    stage = None

    def running() -> bool:
        nonlocal stage
        stage = next((p for p in psutil.process_iter() if _cmdline_has(p, call_file)), None)
        return stage is not None and (not with_child or bool(_children(stage)))

    assert wait_for(running, timeout=120, step=0.1), proc.communicate(timeout=120)
    return stage


def _cmdline_has(proc: psutil.Process, text: str) -> bool:
    try:
        return text in proc.cmdline()
    except psutil.Error:
        return False


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


@pytest.mark.parametrize("options, words", [
    (["--cluster", "127.0.0.1:1"], "no Ray head answers there"),
    (["--cluster", "not an address"], "give auto, HOST:PORT"),
    (["--cluster", "local", "--jobs", "2"], "--jobs is for one machine"),
    (["--cluster", "local", "--isolation", "none"], "leave out --isolation"),
    (["--cluster-unit", "stage"], "--cluster-unit needs --cluster"),
])
def test_cluster_options_that_cannot_be_used_are_refused_in_one_line_before_anything_starts(tmp_path, options, words):
    (tmp_path / "topics.txt").write_text("one topic\n")
    out = run_cli("--pipeline", _pipeline(tmp_path), "--topics-file", "topics.txt", *options,
                  "--run-dir", "batch", cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and words in out.stderr
    assert not (tmp_path / "batch").exists()

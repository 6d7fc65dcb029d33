"""A run's observer hears typed events, and the cluster streams exactly those events from a node to its driver."""

import threading

import msgspec

from aishorts.ipc.params import PipelineParams
from aishorts.runner.events import RunEvent, StageFinished, StageProgress, StageSample, StageStarted
from aishorts.runner.limits import load_limits
from aishorts.runner.pipeline_file import load_pipeline
from aishorts.runner.run import RunOptions, run_pipeline
from tests.runner_helpers import balloon_pipeline, wait_for


def _run(tmp_path, observer, label="short-1"):
    pipeline_file = balloon_pipeline(tmp_path / "p.toml", {"name": "a", "params": {"mb": 30, "rate_mb_s": 60}},
                                     {"name": "b", "params": {"mb": 5}})
    pipeline, limits = load_pipeline(pipeline_file, load_limits())
    opts = RunOptions(run_dir=tmp_path / "run", pipeline=pipeline, params=PipelineParams(), limits=limits, label=label)
    return run_pipeline(opts, observer, threading.Event())


def test_an_observer_is_a_callable_that_hears_each_stage_start_progress_sample_and_end(tmp_path):
    heard: list[RunEvent] = []
    report = _run(tmp_path, heard.append)
    assert report.status == "done"
    kinds = {(type(event).__name__, event.stage) for event in heard}
    for name in ("a", "b"):
        assert {("StageStarted", name), ("StageProgress", name), ("StageFinished", name)} <= kinds
    assert ("StageSample", "a") in kinds
    assert all(event.label == "short-1" for event in heard)
    ends = [event for event in heard if isinstance(event, StageFinished)]
    assert [event.report for event in ends] == report.stages
    started = next(i for i, event in enumerate(heard) if isinstance(event, StageStarted) and event.stage == "a")
    ended = next(i for i, event in enumerate(heard) if isinstance(event, StageFinished) and event.stage == "a")
    assert started < ended


def test_every_event_survives_its_wire_encoding_unchanged(tmp_path):
    heard: list[RunEvent] = []
    _run(tmp_path, heard.append)
    decoder = msgspec.json.Decoder(RunEvent)
    assert [decoder.decode(msgspec.json.encode(event)) for event in heard] == heard


def test_a_node_streams_its_runs_events_to_the_driver_as_they_are(tmp_path):
    from aishorts.cluster.progress import RemoteObserver, progress_server

    local: list[RunEvent] = []
    driver: list[RunEvent] = []
    with progress_server("127.0.0.1", "secret", driver.append) as address:
        remote = RemoteObserver(address, "secret")
        order = threading.Lock()  # events come from several watchdog threads: keep one order for both lists

        def both(event):
            with order:
                local.append(event)
                remote(event)

        _run(tmp_path, both)
        remote.close()
        assert wait_for(lambda: sum(isinstance(event, StageFinished) for event in driver) == 2, timeout=30)

    def slim(event):
        if isinstance(event, StageFinished):  # the curve stays on the node; the display needs the figures
            return msgspec.structs.replace(event, report=msgspec.structs.replace(event.report, timeline=[]))
        return event

    assert [slim(e) for e in local if not isinstance(e, StageSample)] == [e for e in driver if not isinstance(e, StageSample)]
    sent_samples = [e for e in driver if isinstance(e, StageSample)]
    assert sent_samples and len(sent_samples) <= len([e for e in local if isinstance(e, StageSample)])
    assert any(isinstance(e, StageProgress) and e.event.message.endswith("MB") for e in driver)


def test_a_node_without_its_driver_prints_the_events_on_stderr(tmp_path, capfd):
    from aishorts.cluster.progress import RemoteObserver

    remote = RemoteObserver(None, "secret")
    _run(tmp_path, remote)
    err = capfd.readouterr().err
    assert "[short-1:a] started (ceiling" in err and "[short-1:b] done: peak" in err

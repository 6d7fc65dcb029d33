"""Shared test helpers: running one stage on saved inputs without the supervisor."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from aishorts.ipc.artifacts import Artifact
from aishorts.ipc.files import write_struct
from aishorts.ipc.messages import ProgressEvent, StageCall
from aishorts.ipc.pipeline import DEFAULT_PIPELINE, artifact_path
from aishorts.runner.limits import load_limits

ROOT = Path(__file__).resolve().parent.parent
# The developer stages the tests run (tools.balloon, ...) are not shipped in the wheel: every process a test
# starts finds them, and the checkout's own code, from the repository.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))


def stage_call(run_dir: Path, stage: str, params: msgspec.Struct, device: str = "cpu", ceiling_bytes: int = 0) -> StageCall:
    spec = next(s for s in DEFAULT_PIPELINE if s.name == stage)
    kinds = {s.name: s.output for s in DEFAULT_PIPELINE}
    return StageCall(
        stage=stage,
        module=spec.module,
        run_dir=str(run_dir),
        out_dir=str(run_dir / stage),
        inputs={name: artifact_path(name) for name in spec.inputs},
        input_kinds={name: kinds[name] for name in spec.inputs},
        output_kind=spec.output,
        params=msgspec.Raw(msgspec.json.encode(params)),
        device=device,
        ceiling_bytes=ceiling_bytes,
        thresholds=load_limits().for_stage(stage).thresholds,  # as the runner hands them: from limits.toml
    )


def stage_context(run_dir: Path, stage: str, params: msgspec.Struct, ceiling_bytes: int):
    """A stage's context under a given ceiling, and the list its progress and log events land in."""
    from aishorts.stages.common.context import StageContext

    events: list[ProgressEvent] = []
    return StageContext(stage_call(run_dir, stage, params, ceiling_bytes=ceiling_bytes), events.append), events


@pytest.fixture
def run_stage_inline():
    """Call `run_stage_inline(run_dir, stage, params, **upstream_artifacts)`: writes the
    upstream artifacts where the stage expects them, runs it in this process, returns
    (artifact, progress events)."""
    from aishorts.stages.harness import execute

    def run(run_dir: Path, stage: str, params: msgspec.Struct, **upstream: Artifact):
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, artifact in upstream.items():
            write_struct(run_dir / artifact_path(name), artifact)
        events: list[ProgressEvent] = []
        result = execute(stage_call(run_dir, stage, params), events.append)
        return result, events

    return run


@pytest.fixture(autouse=True)
def no_llm_of_the_users(monkeypatch):
    """`--llm auto` (the default) would use a key in this machine's environment or a local Ollama, and
    `--scorer auto` the Hugging Face hub: tests that want one set it up themselves (tests/test_llm_auto.py,
    tests/test_match_hub.py)."""
    import socket

    for name in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "PEXELS_API_KEY", "PIXABAY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("OLLAMA_HOST", closed)
    monkeypatch.setenv("AISHORTS_LLAMACPP_URL", f"http://{closed}")
    monkeypatch.setenv("HF_ENDPOINT", f"http://{closed}")


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """The stages' cache (wiki answers, embeddings) in this test's own folder: `pytestmark =
    pytest.mark.usefixtures("own_cache")` in a module whose tests must not see each other's."""
    monkeypatch.setenv("AISHORTS_CACHE", str(tmp_path / "cache"))

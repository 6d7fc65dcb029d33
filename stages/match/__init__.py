"""The match stage: a visual for every sentence, scored by CLIP or sentence embeddings."""

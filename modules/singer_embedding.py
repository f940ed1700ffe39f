"""The singer condition of a batch: one embedding row per singer id, or a weighted mix of rows
(models/base/singer_mix.py)."""
from __future__ import annotations

import torch
from torch import nn

# The batch entry of a singer mix: (B, singer_table_size) float weights, each row summing to 1.
MIX_KEY = "singer_weights"


def embed_singers(embedding: nn.Embedding, batch: dict[str, torch.Tensor],
                  singer: torch.Tensor | None = None) -> torch.Tensor:
    """(B, D) singer embeddings of ``batch``: ``batch["singer_weights"] @ embedding.weight`` when
    the batch carries a mix (:data:`MIX_KEY`, (B, table size)), else ``embedding(singer)`` with
    ``singer`` (B,) long (default ``batch["singer"]``), exactly the plain lookup.

    Raises: ValueError for mix weights whose width is not the table size."""
    weights = batch.get(MIX_KEY)
    if weights is None:
        return embedding(batch["singer"] if singer is None else singer)
    if weights.shape[-1] != embedding.num_embeddings:
        raise ValueError(f"singer mix weights cover {weights.shape[-1]} singers, the embedding "
                         f"table has {embedding.num_embeddings}")
    return weights.to(embedding.weight.dtype) @ embedding.weight

"""NARM (Li et al., 2017) as in RecBole, computed for every prefix.

For the prefix ending at position j: ``c_global = h_j`` (last GRU state) and
``c_local = sum_{i <= j, item_i != 0} alpha_ij h_i`` with the additive, unnormalised
attention ``alpha_ij = v . sigmoid(A_1 h_i + A_2 h_j)``; the output is
``B [c_local; c_global]`` in the item embedding space. Position j only sees items 0..j, so
the model trains on every position like the other causal models.

Cost: the attention is (B, L, L, hidden); training computes it in query chunks under
activation checkpointing to bound memory, each chunk against only the keys its prefixes
can see (about half the pairs), and ``next_item_hidden`` computes only the last prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hymoerec.models.base import ModelOutput, SequentialModel
from hymoerec.models.config import positive_int, probability
from hymoerec.models.layers import Dropout
from hymoerec.schema import ConfigError

QUERY_CHUNK = 8  # prefixes whose attention is materialised at once (8: fastest on CPU)


@dataclass(frozen=True)
class NARMConfig:
    """RecBole's narm.yaml defaults."""

    embedding_size: int = 64  # item embedding size, also the scoring space
    hidden_size: int = 128  # GRU state size
    num_layers: int = 1  # stacked GRU layers
    dropout: tuple[float, float] = (0.25, 0.5)  # (on embeddings, on [c_local; c_global])

    def __post_init__(self) -> None:
        for name in ("embedding_size", "hidden_size", "num_layers"):
            positive_int(name, getattr(self, name))
        if not isinstance(self.dropout, (list, tuple)) or len(self.dropout) != 2:
            raise ConfigError(
                f"dropout must be two rates [embedding, context], got {self.dropout!r}"
            )
        for rate in self.dropout:
            probability("dropout", rate)
        object.__setattr__(self, "dropout", tuple(self.dropout))  # YAML gives a list


class NARM(SequentialModel):
    def __init__(self, config: NARMConfig, num_items: int) -> None:
        super().__init__(num_items)
        self.config = config
        e, h = config.embedding_size, config.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, e, padding_idx=0)
        self.emb_dropout = Dropout(config.dropout[0])
        self.gru = nn.GRU(e, h, config.num_layers, batch_first=True, bias=False)
        self.a_1 = nn.Linear(h, h, bias=False)  # keys: A_1 h_i
        self.a_2 = nn.Linear(h, h, bias=False)  # query: A_2 h_j
        self.v_t = nn.Linear(h, 1, bias=False)
        self.ct_dropout = Dropout(config.dropout[1])
        self.b = nn.Linear(2 * h, e, bias=False)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """RecBole: Xavier-normal embeddings and Linear layers, Xavier-uniform GRU."""
        for module in (self.item_embedding, self.a_1, self.a_2, self.v_t, self.b):
            nn.init.xavier_normal_(module.weight)
        self.item_embedding.weight[0].zero_()
        for param in self.gru.parameters():
            nn.init.xavier_uniform_(param)

    def _attend(self, keys: Tensor, states: Tensor, query: Tensor, visible: Tensor) -> Tensor:
        """keys, states: (B, L, H); query: (B, Q, H); visible: (B, Q, L) -> (B, Q, H)."""
        energy = torch.sigmoid(keys[:, None] + query[:, :, None])  # (B, Q, L, H)
        alpha = self.v_t(energy).squeeze(-1) * visible  # (B, Q, L)
        return alpha @ states  # (B, Q, H)

    def _represent(self, items: Tensor, queries: Tensor) -> Tensor:
        """(B, Q, E) NARM output for the prefixes ending at ``queries`` (B, Q)."""
        states, _ = self.gru(self.emb_dropout(self.item_embedding(items)))  # (B, L, H)
        keys = self.a_1(states)  # (B, L, H)
        c_global = states.gather(1, queries[..., None].expand(-1, -1, states.size(-1)))
        query = self.a_2(c_global)  # (B, Q, H)
        position = torch.arange(items.size(1), device=items.device)
        visible = (position <= queries[..., None]) & (items != 0)[:, None]  # (B, Q, L)
        furthest = queries.amax(dim=0).tolist()  # one device sync for all the chunks
        chunks = []
        for s in range(0, queries.size(1), QUERY_CHUNK):
            # Keys after the chunk's furthest prefix are masked out: leave them out.
            seen = max(furthest[s : s + QUERY_CHUNK]) + 1
            args = (
                keys[:, :seen],
                states[:, :seen],
                query[:, s : s + QUERY_CHUNK],
                visible[:, s : s + QUERY_CHUNK, :seen],
            )
            if torch.is_grad_enabled():
                chunks.append(checkpoint(self._attend, *args, use_reentrant=False))
            else:
                chunks.append(self._attend(*args))
        c_local = torch.cat(chunks, dim=1)  # (B, Q, H)
        context = torch.cat([c_local, c_global], dim=-1)  # (B, Q, 2H)
        return self.b(self.ct_dropout(context))  # (B, Q, E)

    def forward(self, items: Tensor, alpha_scale: float = 1.0) -> ModelOutput:
        every = torch.arange(items.size(1), device=items.device).expand(items.size(0), -1)
        hidden = self._represent(items, every)  # (B, L, E)
        return ModelOutput(hidden, items.new_zeros((), dtype=torch.float))

    def next_item_hidden(self, items: Tensor, lengths: Tensor) -> Tensor:
        last = (lengths - 1).clamp(min=0)[:, None]  # (B, 1)
        return self._represent(items, last).squeeze(1)  # (B, E)

    def item_weights(self) -> Tensor:
        return self.item_embedding.weight  # (num_items + 1, E)

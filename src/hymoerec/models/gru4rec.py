"""GRU4Rec (Hidasi et al., 2016) as in RecBole: embedding -> dropout -> GRU -> Linear
back to the embedding size, scored against the item embedding table."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hymoerec.models.base import ModelOutput, SequentialModel
from hymoerec.models.config import positive_int, probability
from hymoerec.models.layers import Dropout


@dataclass(frozen=True)
class GRU4RecConfig:
    """RecBole's gru4rec.yaml defaults."""

    embedding_size: int = 64  # item embedding size, also the scoring space
    hidden_size: int = 128  # GRU state size
    num_layers: int = 1  # stacked GRU layers
    dropout: float = 0.3  # on the item embeddings

    def __post_init__(self) -> None:
        for name in ("embedding_size", "hidden_size", "num_layers"):
            positive_int(name, getattr(self, name))
        probability("dropout", self.dropout)


class GRU4Rec(SequentialModel):
    def __init__(self, config: GRU4RecConfig, num_items: int) -> None:
        super().__init__(num_items)
        self.config = config
        self.item_embedding = nn.Embedding(num_items + 1, config.embedding_size, padding_idx=0)
        self.dropout = Dropout(config.dropout)
        self.gru = nn.GRU(
            config.embedding_size, config.hidden_size, config.num_layers, batch_first=True
        )
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """RecBole: Xavier-normal embeddings, Xavier-uniform GRU matrices."""
        nn.init.xavier_normal_(self.item_embedding.weight)
        self.item_embedding.weight[0].zero_()
        for name, param in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(param)

    def forward(self, items: Tensor, alpha_scale: float = 1.0) -> ModelOutput:
        x = self.dropout(self.item_embedding(items))  # (B, L, E)
        h, _ = self.gru(x)  # (B, L, H) causal: right padding never reaches real positions
        return ModelOutput(self.dense(h), items.new_zeros((), dtype=torch.float))

    def item_weights(self) -> Tensor:
        return self.item_embedding.weight  # (num_items + 1, E)

"""Recommendations from a trained run: "what next for this history / this user?".

``Recommender.load(run_dir)`` needs only the run directory (config, weights, prepared
sequences and item metadata written by ``hymoerec train``); it never imports the
trainer. Histories are raw item ids as the dataset spells them. Unknown ids are dropped
and reported, never mapped to padding; a history with no known item falls back to the
most popular items and says so; only the most recent ``max_len`` items reach the model,
while ``exclude_seen`` removes every item of the history given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hymoerec.artifacts import ArtifactError
from hymoerec.config import prepare_dataset, relocated
from hymoerec.data.interactions import PAD
from hymoerec.data.metadata import load_metadata
from hymoerec.data.protocol import SequenceData
from hymoerec.evaluation.topk import chunked_topk
from hymoerec.models import build_model
from hymoerec.models.base import SequentialModel
from hymoerec.rundir import check_run_dir, load_weights, read_config, read_dataset, read_items
from hymoerec.runtime import resolve_device

ItemId = str | int


class RecommendError(ValueError):
    """A request that cannot be answered: bad k, unknown user or item, bad history."""


class UnknownIdError(RecommendError):
    """A user or item id the run's dataset does not contain."""


@dataclass(frozen=True)
class Recommendation:
    """Top items for one history, best first."""

    items: list[str]  # raw item ids
    scores: list[float]  # model scores (training counts when ``fallback`` is set)
    metadata: list[dict[str, Any]]  # per item, {} when the dataset has none
    unknown: list[str] = field(default_factory=list)  # history ids dropped as unknown
    history_length: int = 0  # known history items that reached the model
    fallback: str | None = None  # why popularity was used instead of the model

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"rank": rank, "item_id": item, "score": score, **meta}
            for rank, (item, score, meta) in enumerate(
                zip(self.items, self.scores, self.metadata, strict=True), start=1
            )
        ]


class Recommender:
    """A trained model with its catalogue, ready to rank items for histories and users."""

    def __init__(
        self,
        model: SequentialModel,
        data: SequenceData,
        max_len: int,
        metadata: dict[str, dict[str, Any]] | None = None,
        device: str | torch.device = "cpu",
        name: str = "",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.data = data
        self.max_len = max_len
        self.metadata = metadata or {}
        self.name = name
        counts = np.bincount(np.asarray(data.items), minlength=data.num_items + 1)
        counts[PAD] = -1  # padding is never recommended
        self.popularity = counts  # (N + 1,) interactions per internal item id
        self._by_popularity = np.argsort(-counts, kind="stable")
        self._weights: torch.Tensor | None = None

    @classmethod
    def load(
        cls, run_dir: str | Path, device: str = "auto", data_dir: str | Path | None = None
    ) -> Recommender:
        """Load a run directory written by ``hymoerec train``.

        Runs written before the prepared sequences were stored in the run directory are
        rebuilt from their dataset (``data_dir`` overrides the directory in the config).
        """
        run = Path(run_dir)
        check_run_dir(run)
        config = read_config(run)
        metadata = read_items(run)
        data = read_dataset(run)
        if data is None:
            source, data = prepare_dataset(config.dataset, relocated(config.data, data_dir))
            metadata = load_metadata(source)
        try:
            model = build_model(config.model, config.model_options, data.num_items)
        except (TypeError, ValueError) as error:
            raise ArtifactError(f"{run / 'config.yaml'}: {error}") from None
        load_weights(model, run)
        max_len = config.train.max_len or 200
        name = f"{config.model} on {config.dataset}"
        return cls(model, data, max_len, metadata, resolve_device(device), name)

    @property
    def num_items(self) -> int:
        return self.data.num_items

    def item(self, item_id: ItemId) -> dict[str, Any]:
        """Metadata and training popularity of one item."""
        internal = int(self.data.item_ids.to_internal(str(item_id))[0])
        if internal < 0:
            raise UnknownIdError(f"unknown item id {item_id!r}")
        return {
            "item_id": str(item_id),
            "interactions": int(self.popularity[internal]),
            **self.metadata.get(str(item_id), {}),
        }

    def user_history(self, user_id: ItemId) -> list[str]:
        """Every known interaction of a user of the training data, oldest first."""
        user = int(self.data.users.to_internal(str(user_id))[0])
        if user < 0:
            raise UnknownIdError(f"unknown user id {user_id!r}")
        return self.data.item_ids.to_external(self.data.sequence(user)).tolist()

    def recommend(
        self, history: Sequence[ItemId], k: int = 10, exclude_seen: bool = True
    ) -> Recommendation:
        """Top ``k`` items to follow ``history`` (raw item ids, oldest first)."""
        return self.recommend_many([history], k, exclude_seen)[0]

    def recommend_users(
        self, user_ids: Sequence[ItemId], k: int = 10, exclude_seen: bool = True
    ) -> list[Recommendation]:
        """Top ``k`` items for users of the training data, from their full history."""
        histories = [self.user_history(user) for user in user_ids]
        return self.recommend_many(histories, k, exclude_seen)

    def recommend_many(
        self,
        histories: Sequence[Sequence[ItemId]],
        k: int | Sequence[int] = 10,
        exclude_seen: bool | Sequence[bool] = True,
        batch_size: int = 256,
    ) -> list[Recommendation]:
        """Batched ``recommend``; ``k`` and ``exclude_seen`` may differ per history."""
        count = len(histories)
        ks = [k] * count if isinstance(k, int) else list(k)
        excludes = [exclude_seen] * count if isinstance(exclude_seen, bool) else list(exclude_seen)
        if len(ks) != count or len(excludes) != count:
            raise RecommendError("k and exclude_seen need one value per history")
        for value in ks:
            if isinstance(value, bool) or not 1 <= value <= self.num_items:
                raise RecommendError(f"k={value}: must be between 1 and {self.num_items}")
        known: list[np.ndarray] = []
        unknown: list[list[str]] = []
        for history in histories:
            raw = [str(item) for item in history]
            internal = self.data.item_ids.to_internal(raw) if raw else np.zeros(0, np.int64)
            known.append(internal[internal > 0])
            unknown.append([item for item, i in zip(raw, internal, strict=True) if i < 0])
        results: list[Recommendation | None] = [None] * count
        with_model = [i for i in range(count) if len(known[i])]
        for i in range(count):
            if not len(known[i]):
                results[i] = self._popular(known[i], unknown[i], ks[i], excludes[i])
        for start in range(0, len(with_model), batch_size):
            chosen = with_model[start : start + batch_size]
            ranked = self._rank(
                [known[i] for i in chosen],
                max(ks[i] for i in chosen),
                [excludes[i] for i in chosen],
            )
            for i, (scores, ids) in zip(chosen, ranked, strict=True):
                keep = ids > 0  # rows shorter than k (everything else excluded) end in padding
                results[i] = self._result(
                    ids[keep][: ks[i]], scores[keep][: ks[i]], unknown[i], len(known[i])
                )
        return [r for r in results if r is not None]

    def _rank(
        self, histories: list[np.ndarray], k: int, exclude: list[bool]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(scores, internal ids) of the top ``k`` for each history."""
        recent = [h[-self.max_len :] for h in histories]
        longest = max(len(h) for h in recent)
        items = np.zeros((len(recent), longest), dtype=np.int64)
        for row, h in enumerate(recent):
            items[row, : len(h)] = h
        seen_width = max((len(h) for h, e in zip(histories, exclude, strict=True) if e), default=0)
        seen = np.zeros((len(histories), seen_width), dtype=np.int64)
        for row, (h, e) in enumerate(zip(histories, exclude, strict=True)):
            if e:
                seen[row, : len(h)] = h
        lengths = torch.tensor([len(h) for h in recent], device=self.device)
        with torch.inference_mode():
            hidden = self.model.next_item_hidden(
                torch.from_numpy(items).to(self.device), lengths
            )  # (B, D)
            scores, ids = chunked_topk(
                hidden.float(),
                self._item_weights(),
                min(k, self.num_items),
                torch.from_numpy(seen).to(self.device) if seen_width else None,
            )
        return list(zip(scores.cpu().numpy(), ids.cpu().numpy(), strict=True))

    def _item_weights(self) -> torch.Tensor:
        if self._weights is None:
            with torch.inference_mode():
                self._weights = self.model.item_weights().float()
        return self._weights

    def _popular(
        self, history: np.ndarray, unknown: list[str], k: int, exclude: bool
    ) -> Recommendation:
        order = self._by_popularity[self._by_popularity != PAD]
        if exclude and len(history):
            order = order[~np.isin(order, history)]
        chosen = order[:k]
        reason = (
            "no known item in the history: most popular items"
            if unknown
            else "empty history: most popular items"
        )
        scores = self.popularity[chosen].astype(np.float64)
        return self._result(chosen, scores, unknown, 0, reason)

    def _result(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        unknown: list[str],
        used: int,
        fallback: str | None = None,
    ) -> Recommendation:
        external = self.data.item_ids.to_external(ids).tolist()
        return Recommendation(
            items=external,
            scores=[float(s) for s in scores],
            metadata=[self.metadata.get(item, {}) for item in external],
            unknown=unknown,
            history_length=min(used, self.max_len),
            fallback=fallback,
        )

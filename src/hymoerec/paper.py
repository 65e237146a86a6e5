"""Table 1 of the HyMoERec paper, as far as it is quoted here: the numbers our results are
compared with. A (dataset, model, metric) missing below is not given here; the results
document shows its cell as such instead of guessing a value."""

from __future__ import annotations

# (dataset, model) -> metric -> value reported in the paper's Table 1
PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    ("ml-1m", "hymoerec"): {"HR@10": 0.3103, "NDCG@10": 0.1790},
    ("amazon-beauty", "hymoerec"): {"HR@10": 0.0756, "NDCG@10": 0.0442},
}


def paper_value(dataset: str, model: str, metric: str) -> float | None:
    return PAPER_TABLE1.get((dataset, model), {}).get(metric)

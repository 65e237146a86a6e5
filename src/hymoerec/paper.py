"""Table 1 of the HyMoERec paper (all rows, baselines included): the numbers our results
are compared with. A (dataset, model, metric) missing below is not in the paper's table;
the results document shows its cell as such instead of guessing a value. SASRec is not
in the paper's table."""

from __future__ import annotations

_METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10")
_ROWS = {
    "ml-1m": {
        "narm": (0.1727, 0.2565, 0.1135, 0.1404),
        "gru4rec": (0.1998, 0.2815, 0.1364, 0.1628),
        "bert4rec": (0.1879, 0.2868, 0.1249, 0.1568),
        "mamba4rec": (0.2106, 0.3065, 0.1447, 0.1756),
        "hymoerec": (0.2157, 0.3103, 0.1486, 0.1790),
    },
    "amazon-beauty": {
        "narm": (0.0418, 0.0630, 0.0285, 0.0352),
        "gru4rec": (0.0402, 0.0635, 0.0274, 0.0349),
        "bert4rec": (0.0243, 0.0402, 0.0151, 0.0202),
        "mamba4rec": (0.0511, 0.0731, 0.0362, 0.0432),
        "hymoerec": (0.0518, 0.0756, 0.0365, 0.0442),
    },
}
# (dataset, model) -> metric -> value reported in the paper's Table 1
PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    (dataset, model): dict(zip(_METRICS, values, strict=True))
    for dataset, rows in _ROWS.items()
    for model, values in rows.items()
}


def paper_value(dataset: str, model: str, metric: str) -> float | None:
    return PAPER_TABLE1.get((dataset, model), {}).get(metric)

"""The run records of ``hymoerec reproduce`` and what is built from them: summaries over
seeds (``records``), user-by-user comparisons (``stats``) and docs/results.md
(``render``)."""

from hymoerec.results.records import Summary, load_record, load_records, summarise
from hymoerec.results.render import render, write_results
from hymoerec.results.stats import PairedTest, paired_test, per_user_ndcg10

__all__ = [
    "PairedTest",
    "Summary",
    "load_record",
    "load_records",
    "paired_test",
    "per_user_ndcg10",
    "render",
    "summarise",
    "write_results",
]

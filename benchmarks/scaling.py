"""How training and full-ranking evaluation cost grows with the catalogue and the data.

    python benchmarks/scaling.py                      # both sweeps, table + docs/figures
    python benchmarks/scaling.py --quick              # tiny sizes, to check the script
    python benchmarks/scaling.py --prepare-only --sizes 10000000 30000000 100000000

Synthetic data, generated here: item popularity follows a power law, p(rank r) ∝
(r + 10)^-0.8 (the top item takes ~1% of the interactions at 1M items, as in Amazon
data); history lengths are log-normal with median 20 (mean ~33), clipped to [5, 2000],
like a 5-core e-commerce log. Sweep (a) grows the catalogue 10k -> 100k -> 1M items at
1M interactions; sweep (b) grows the interactions 1M -> 10M -> 30M at 100k items; one
more row trains 1M items on 30M interactions.

Every measurement runs in a fresh interpreter, so its peak resident memory (max RSS) is
its own: ``gen`` builds the CSR arrays and writes them with the library's cache writer;
``train`` loads them memory-mapped and runs HyMoERec (ML-1M settings, history 50,
batch 128, one thread) for a fixed number of optimizer steps, then EXTRAPOLATES seconds
per epoch from targets per second over those steps; ``eval`` ranks every item for a
sample of users (chunked over items, ``train.eval_item_chunk``) and extrapolates to all
users. Section (d), with ``--prepare`` (or alone, ``--prepare-only``), writes the log
as a TSV file and measures, each in a fresh process: the reader alone (``read_table``),
``hymoerec data prepare``'s path (read + protocol + cache write) and the load of the
cache entry back, then the protocol alone (k-core, re-indexing, sort) on the log as the
reader hands it over. The reader and the prepare path also run with the readers and
protocol of a reference revision (``--reference``, unpacked with ``git archive``: the
line-by-line readers), in the same run, for the before / after ratio.

Every duration is the process's CPU time (``time.process_time``) with one torch thread,
so the figures do not depend on what else runs on the machine; on an idle core, wall
time is about the same.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from reader_identity import REFERENCE, unpack

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
MAX_LEN = 50
BATCH = 128
ZIPF_EXPONENT = 0.8
ZIPF_OFFSET = 10


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def synthetic_lengths(rng: np.random.Generator, interactions: int) -> np.ndarray:
    """Log-normal history lengths (median 20, clipped to [5, 2000]) summing exactly to
    ``interactions``."""
    draws = rng.lognormal(np.log(20), 1.0, size=interactions // 20 + 10)
    lengths = np.clip(draws, 5, 2000).astype(np.int64)
    total = np.cumsum(lengths)
    users = int(np.searchsorted(total, interactions)) + 1
    lengths = lengths[:users]
    lengths[-1] -= int(lengths.sum()) - interactions
    if lengths[-1] < 5:  # fold a short last user into the one before
        lengths[-2] += lengths[-1]
        lengths = lengths[:-1]
    return lengths


def synthetic_items(rng: np.random.Generator, items: int, interactions: int) -> np.ndarray:
    """(interactions,) int32 ids 1..items drawn from the power law, in chunks so that only
    the output and one chunk of uniforms are in memory."""
    weights = (np.arange(items, dtype=np.float64) + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    rank_to_id = (rng.permutation(items) + 1).astype(np.int32)  # popular != low id
    out = np.empty(interactions, dtype=np.int32)
    step = 1 << 22
    for start in range(0, interactions, step):
        stop = min(start + step, interactions)
        ranks = np.searchsorted(cdf, rng.random(stop - start))
        out[start:stop] = rank_to_id[np.minimum(ranks, items - 1)]
    return out


def worker_gen(items: int, interactions: int, directory: Path) -> dict:
    from hymoerec.data.cache import save
    from hymoerec.data.protocol import IdMap, SequenceData

    begin = time.process_time()
    rng = np.random.default_rng(0)
    lengths = synthetic_lengths(rng, interactions)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = SequenceData(
        offsets=offsets,
        items=synthetic_items(rng, items, interactions),
        users=IdMap(np.arange(len(lengths)).astype(str)),
        item_ids=IdMap(np.arange(1, items + 1).astype(str), offset=1),
    )
    save(data, directory, {"synthetic": {"items": items, "interactions": interactions}})
    return {
        "users": len(lengths),
        "gen_s": time.process_time() - begin,
        "gen_rss_gb": peak_rss_gb(),
    }


def worker_prepare(items: int, interactions: int) -> dict:
    """The protocol on the raw log as a reader hands it over (int32 id codes and each
    distinct id once): its peak memory against the log's."""
    from hymoerec.data.interactions import Interactions
    from hymoerec.data.protocol import ProtocolConfig, apply_protocol

    rng = np.random.default_rng(0)
    lengths = synthetic_lengths(rng, interactions)
    log = Interactions(
        user=encoded(np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)),
        item=encoded(synthetic_items(rng, items, interactions)),
        timestamp=np.arange(interactions, dtype=np.int64),
    )
    raw_gb = (
        sum(ids.codes.nbytes + ids.values.nbytes for ids in (log.user_ids, log.item_ids))
        + log.timestamp.nbytes
    )
    raw_gb /= 2**30
    before = peak_rss_gb()
    begin = time.process_time()
    data = apply_protocol(log, ProtocolConfig())
    return {
        "prepare_s": time.process_time() - begin,
        "raw_log_gb": raw_gb,
        "rss_before_gb": before,
        "prepare_rss_gb": peak_rss_gb(),
        "kept": data.num_interactions,
    }


def encoded(numbers: np.ndarray):  # type: ignore[no-untyped-def]
    """Ids of integer ids written as text, as a reader makes them: the distinct ids
    sorted as strings, and every row's code among them."""
    from hymoerec.data.interactions import Ids

    distinct = np.unique(numbers)
    text = distinct.astype(str)
    order = np.argsort(text, kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return Ids(rank[np.searchsorted(distinct, numbers)], text[order])


TABLE_OPTIONS = {"user_col": "user", "item_col": "item", "time_col": "timestamp"}


def worker_tsv(items: int, interactions: int, path: Path) -> dict:
    """The synthetic log as a TSV file, for the reader."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(0)
    lengths = synthetic_lengths(rng, interactions)
    users = np.repeat(np.arange(len(lengths)), lengths)
    ids = synthetic_items(rng, items, interactions)
    options = pcsv.WriteOptions(delimiter="\t", quoting_style="none", include_header=False)
    with open(path, "wb") as f:
        f.write(b"user\titem\ttimestamp\n")
        step = 1 << 22
        for start in range(0, interactions, step):
            stop = min(start + step, interactions)
            columns = [users[start:stop], ids[start:stop], np.arange(start, stop)]
            table = pa.table(columns, names=["user", "item", "timestamp"])
            pcsv.write_csv(table, f, write_options=options)
    return {"file_gb": path.stat().st_size / 2**30}


def worker_reader(path: Path) -> dict:
    """The TSV reader alone."""
    from hymoerec.data.readers import read_table

    begin, wall = time.process_time(), time.perf_counter()
    log = read_table(path, **TABLE_OPTIONS)
    return {
        "reader_s": time.process_time() - begin,
        "reader_wall_s": time.perf_counter() - wall,
        "reader_rss_gb": peak_rss_gb(),
        "rows": len(log),
    }


def worker_read(path: Path, cache: Path) -> dict:
    """Read + protocol + cache write of a TSV log (``hymoerec data prepare``), then a
    fresh load of the cache entry is timed by ``worker_load``."""
    from hymoerec.data.cache import load_dataset

    begin, wall = time.process_time(), time.perf_counter()
    load_dataset(str(path), cache_root=cache, options=TABLE_OPTIONS)
    return {
        "read_s": time.process_time() - begin,
        "read_wall_s": time.perf_counter() - wall,
        "read_rss_gb": peak_rss_gb(),
    }


def worker_load(path: Path, cache: Path) -> dict:
    from hymoerec.data.cache import load_dataset

    baseline = peak_rss_gb()
    begin = time.process_time()
    _, data = load_dataset(str(path), cache_root=cache, options=TABLE_OPTIONS)
    return {
        "load_s": time.process_time() - begin,
        "load_rss_gb": peak_rss_gb() - baseline,
        "mmap": isinstance(data.items, np.memmap),
    }


def build(directory: Path, loss: str, threads: int):  # type: ignore[no-untyped-def]
    import torch

    from hymoerec.config import TrainConfig
    from hymoerec.data.cache import load
    from hymoerec.models import build_model

    torch.set_num_threads(threads)
    data = load(directory)  # memory-mapped
    config = TrainConfig(batch_size=BATCH, max_len=MAX_LEN, loss=loss, threads=threads)
    torch.manual_seed(config.seed)
    model = build_model("hymoerec", {"dropout": 0.2}, data.num_items)
    return data, config, model


def worker_train(directory: Path, loss: str, steps: int, threads: int, budget: float) -> dict:
    """``steps`` timed optimizer steps, or fewer (at least 2) once ``budget`` seconds of
    them have run: exact CE on a million items takes tens of seconds a step."""
    from hymoerec.training.loop import Trainer, train_step

    data, config, model = build(directory, loss, threads)
    begin = time.process_time()
    trainer = Trainer(model, data, config, MAX_LEN)
    setup = time.process_time() - begin
    targets, timed, counted = 0, 0.0, 0
    batches = itertools.chain.from_iterable(
        trainer.sampler.epoch(trainer.rng) for _ in itertools.count()
    )
    for step in range(steps + 1):  # the first step warms up and is not timed
        if counted >= 2 and timed > budget:
            break
        batch = next(batches)
        begin = time.process_time()
        loss_value, _, _ = train_step(
            trainer.model, batch, 1.0, config, trainer.device, trainer.loss_fn
        )
        trainer.optimizer.zero_grad(set_to_none=True)
        loss_value.backward()
        trainer.optimizer.step()
        if step:
            timed += time.process_time() - begin
            targets += batch.num_targets
            counted += 1
    rate = targets / timed
    epoch_targets = trainer.sampler.num_targets
    return {
        "setup_s": setup,
        "timed_steps": counted,
        "targets_per_s": rate,
        "epoch_targets": epoch_targets,
        "epoch_s": epoch_targets / rate + setup,
        "train_rss_gb": peak_rss_gb(),
    }


def worker_eval(directory: Path, users: int, threads: int) -> dict:
    import torch

    from hymoerec.data.protocol import SequenceData
    from hymoerec.training.validation import validate

    data, config, model = build(directory, "chunked_ce", threads)
    sample = min(users, data.num_users)
    # the first users, as a view of the memory-mapped arrays (no copy)
    part = SequenceData(data.offsets[: sample + 1], data.items, data.users, data.item_ids)
    begin = time.process_time()
    validate(model, part, "valid", MAX_LEN, config, torch.device("cpu"))
    seconds = time.process_time() - begin
    return {
        "eval_users": sample,
        "eval_s": seconds * data.num_users / sample,
        "eval_rss_gb": peak_rss_gb(),
    }


def run_worker(*args: str, source: Path | None = None) -> dict:
    """One measurement in a fresh interpreter; ``source``: the ``src`` folder to import
    hymoerec from (a reference revision), else this interpreter's."""
    env = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(
    items: int, interactions: int, losses: list[str], args: argparse.Namespace
) -> list[dict]:
    """One synthetic dataset: generate it, rank on it, train on it with each loss."""
    steps, users, threads = args.steps, args.users, args.threads
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="hymoerec-scaling-"))
    try:
        directory = scratch / "data"
        gen = run_worker("gen", str(items), str(interactions), str(directory))
        evaluation = run_worker("eval", str(directory), str(users), str(threads))
        for loss in losses:
            train = run_worker(
                "train", str(directory), loss, str(steps), str(threads), str(args.budget)
            )
            row = {"items": items, "interactions": interactions, "loss": loss}
            rows.append(row | gen | train | evaluation)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def preparation(sizes: list[int], items: int, reference: Path | None, reference_up_to: int) -> str:
    """Reading a TSV log and preparing it, now and with the reference revision, and the
    protocol alone, against the raw data."""
    rows = []
    for interactions in sizes:
        row: dict = {"interactions": interactions}
        scratch = Path(tempfile.mkdtemp(prefix="hymoerec-read-"))
        try:
            tsv = scratch / "log.tsv"
            row |= run_worker("tsv", str(items), str(interactions), str(tsv))
            row |= run_worker("reader", str(tsv))
            row |= run_worker("read", str(tsv), str(scratch / "cache"))
            row |= run_worker("load", str(tsv), str(scratch / "cache"))
            if reference is not None and interactions <= reference_up_to:
                before = run_worker("reader", str(tsv), source=reference)
                before |= run_worker("read", str(tsv), str(scratch / "old"), source=reference)
                row |= {f"old_{key}": value for key, value in before.items()}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        row |= run_worker("prepare", str(items), str(interactions))
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "| interactions | TSV file GB | read s, before | read s, now (wall) | read speed-up "
        "| read peak RSS GB, before / now | prepare s, before / now "
        "| prepare peak RSS GB, before / now | protocol alone: log GB, peak RSS GB, s "
        "| cached load: RSS GB, s, mmap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            r["old_reader_s"] / r["reader_s"] if "old_reader_s" in r and "reader_s" in r else None
        )
        lines.append(
            f"| {r['interactions']:,} | {fmt(r.get('file_gb'), 2)} | "
            f"{fmt(r.get('old_reader_s'))} | {fmt(r.get('reader_s'))} "
            f"({fmt(r.get('reader_wall_s'))}) | {fmt(ratio) + 'x' if ratio else '-'} | "
            f"{fmt(r.get('old_reader_rss_gb'), 2)} / {fmt(r.get('reader_rss_gb'), 2)} | "
            f"{fmt(r.get('old_read_s'))} / {fmt(r.get('read_s'))} | "
            f"{fmt(r.get('old_read_rss_gb'), 2)} / {fmt(r.get('read_rss_gb'), 2)} | "
            f"{fmt(r.get('raw_log_gb'), 2)}, {fmt(r.get('prepare_rss_gb'), 2)}, "
            f"{fmt(r.get('prepare_s'))} | {fmt(r.get('load_rss_gb'), 3)}, "
            f"{fmt(r.get('load_s'), 3)}, {r.get('mmap')} |"
        )
    return f"(d) preparing the data, {items:,} items\n\n" + "\n".join(lines)


def fmt(value: object, digits: int = 1) -> str:
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def table(rows: list[dict]) -> str:
    columns = [
        ("items", "items", 0),
        ("interactions", "interactions", 0),
        ("users", "users", 0),
        ("loss", "loss", 0),
        ("timed steps", "timed_steps", 0),
        ("targets/s", "targets_per_s", 0),
        ("s/epoch (extrapolated)", "epoch_s", 0),
        ("train peak RSS GB", "train_rss_gb", 2),
        ("eval s, all users (extrapolated)", "eval_s", 0),
        ("eval peak RSS GB", "eval_rss_gb", 2),
    ]
    lines = [
        "| " + " | ".join(c[0] for c in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['items']:,} | {row['interactions']:,} | error: {row['error']} |")
            continue
        lines.append("| " + " | ".join(fmt(row.get(key), d) for _, key, d in columns) + " |")
    return "\n".join(lines)


def plot(catalogue: list[dict], data: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    for column, (rows, key, label) in enumerate(
        [(catalogue, "items", "catalogue size (items)"), (data, "interactions", "interactions")]
    ):
        for loss in sorted({r["loss"] for r in rows}):
            mine = [r for r in rows if r["loss"] == loss and "error" not in r]
            x = [r[key] for r in mine]
            axes[0][column].plot(x, [r["epoch_s"] for r in mine], "o-", label=f"train, {loss}")
            axes[1][column].plot(x, [r["train_rss_gb"] for r in mine], "o-", label=f"train, {loss}")
        evals = {r[key]: r for r in rows if "error" not in r}
        x = sorted(evals)
        axes[0][column].plot(x, [evals[v]["eval_s"] for v in x], "s--", label="full ranking")
        axes[1][column].plot(x, [evals[v]["eval_rss_gb"] for v in x], "s--", label="full ranking")
        for row, ylabel in enumerate(["seconds per epoch / per evaluation", "peak RSS (GB)"]):
            axes[row][column].set_xscale("log")
            axes[row][column].set_yscale("log")
            axes[row][column].set_xlabel(label)
            axes[row][column].set_ylabel(ylabel)
            axes[row][column].grid(True, which="both", alpha=0.3)
            axes[row][column].legend(fontsize=8)
    figure.suptitle("HyMoERec on synthetic power-law data (CPU seconds of 1 thread, extrapolated)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to test the script")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per row")
    parser.add_argument("--budget", type=float, default=60, help="seconds of timed steps, at most")
    parser.add_argument("--users", type=int, default=2048, help="users ranked per evaluation")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=FIGURES, help="where the CSV/MD/PNG go")
    parser.add_argument("--prepare", action="store_true", help="also measure preparation (d)")
    parser.add_argument("--prepare-only", action="store_true", help="only section (d)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000_000, 10_000_000, 30_000_000],
        help="interactions of the logs prepared in section (d)",
    )
    parser.add_argument(
        "--reference",
        default=REFERENCE,
        help="git revision whose readers and protocol give section (d)'s 'before' ('' for none)",
    )
    parser.add_argument(
        "--reference-up-to",
        type=int,
        default=10_000_000,
        help="largest log the reference reads (its line-by-line reader takes ~2.3 GB per 10M)",
    )
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "gen":
            result = worker_gen(int(rest[0]), int(rest[1]), Path(rest[2]))
        elif kind == "prepare":
            result = worker_prepare(int(rest[0]), int(rest[1]))
        elif kind == "tsv":
            result = worker_tsv(int(rest[0]), int(rest[1]), Path(rest[2]))
        elif kind == "reader":
            result = worker_reader(Path(rest[0]))
        elif kind == "read":
            result = worker_read(Path(rest[0]), Path(rest[1]))
        elif kind == "load":
            result = worker_load(Path(rest[0]), Path(rest[1]))
        elif kind == "train":
            result = worker_train(
                Path(rest[0]), rest[1], int(rest[2]), int(rest[3]), float(rest[4])
            )
        else:
            result = worker_eval(Path(rest[0]), int(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return

    scale = 1_000 if args.quick else 1
    if args.prepare or args.prepare_only:
        sizes = [n // scale for n in args.sizes]
        with tempfile.TemporaryDirectory(prefix="hymoerec-reference-") as folder:
            reference = unpack(args.reference, Path(folder)) if args.reference else None
            limit = args.reference_up_to // scale
            prepared = preparation(sizes, 100_000 // scale, reference, limit)
    if args.prepare_only:
        args.out.mkdir(parents=True, exist_ok=True)
        report = args.out / "scaling.md"
        kept = report.read_text().split("(d) preparing the data")[0] if report.exists() else ""
        report.write_text(kept + prepared + "\n")
        print(prepared)
        print(f"\nwritten: section (d) of {report}")
        return
    exact_and_sampled = ["chunked_ce", "sampled_softmax"]
    catalogue = []
    for items in (10_000, 100_000, 1_000_000):
        catalogue += measure(items // scale, 1_000_000 // scale, exact_and_sampled, args)
    data = []
    for interactions in (1_000_000, 10_000_000, 30_000_000):
        data += measure(100_000 // scale, interactions // scale, ["chunked_ce"], args)
    largest = measure(1_000_000 // scale, 30_000_000 // scale, ["sampled_softmax"], args)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = catalogue + data + largest
    with open(args.out / "scaling.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    note = (
        f"HyMoERec (1 layer, hidden 64, 4 routed experts, top-2), history {MAX_LEN}, "
        f"batch {BATCH}, {args.threads} CPU thread(s). Seconds per epoch are EXTRAPOLATED "
        f"from the targets per second of up to {args.steps} timed optimizer steps (fewer "
        f"once {args.budget:.0f} s have passed), plus the sampler set-up; "
        f"evaluation seconds are extrapolated from ranking {args.users} users against every "
        "item. Durations are CPU seconds of the process (one thread). Peak RSS is each "
        "measurement's own process."
    )
    report = "\n\n".join(
        [
            note,
            "(a) catalogue size, 1M interactions\n\n" + table(catalogue),
            "(b) interactions, 100k items\n\n" + table(data),
            "(c) 1M items and 30M interactions\n\n" + table(largest),
        ]
    )
    if args.prepare:
        report += "\n\n" + prepared
    (args.out / "scaling.md").write_text(report + "\n")
    plot(catalogue, data, args.out / "scaling.png")
    print(report)
    print(f"\nwritten: {args.out / 'scaling.csv'}, scaling.md, scaling.png")


if __name__ == "__main__":
    main()

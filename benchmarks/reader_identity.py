"""The readers and the protocol of this checkout against an earlier revision's, on every
shared dataset: the raw logs (ids, timestamps, ratings) and the prepared sequences
(offsets, items, external ids, statistics) must be identical, dtypes included.

    python benchmarks/reader_identity.py --data-dir ../shared/data
    python benchmarks/reader_identity.py --reference <git revision>

Each side runs in its own interpreter: this checkout's ``src``, and the reference
revision's ``src/hymoerec`` unpacked with ``git archive``. Besides the three named
datasets, the real rows are also written in the other raw layouts the readers take
(MovieLens ``ratings.dat``, Amazon ``ratings_*.csv`` and ``reviews_*.json.gz``, a
gzipped TSV with a rating column and ``--min-rating``, Parquet, a CRLF copy, a Latin-1
``ratings.dat``), so that every format is read from real ids and orders.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the last revision with the line-by-line readers.py and the string-sorting protocol
REFERENCE = "68ce41443bbb7c0a79b690c69e25de979c31ff4c"
ARRAYS = ("user", "item", "timestamp", "rating", "offsets", "items", "users", "item_ids")


def worker(case: dict, out: Path) -> None:
    """Read and prepare one case with whichever hymoerec is importable; save the arrays."""
    import logging

    from hymoerec.data.protocol import ProtocolConfig, apply_protocol, statistics
    from hymoerec.data.registry import resolve

    declined: list[str] = []  # why a file was read line by line (this checkout logs it)
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: declined.append(record.getMessage())  # type: ignore[method-assign]
    readers_log = logging.getLogger("hymoerec.data.readers")
    readers_log.setLevel(logging.DEBUG)
    readers_log.addHandler(handler)
    begin = time.process_time()
    source = resolve(case["dataset"], case.get("data_dir"), case.get("format"), case["options"])
    log = source.read()
    read_s = time.process_time() - begin
    data = apply_protocol(log, ProtocolConfig())
    arrays = {
        "user": log.user,
        "item": log.item,
        "timestamp": log.timestamp,
        "offsets": data.offsets,
        "items": data.items,
        "users": data.users.external,
        "item_ids": data.item_ids.external,
    }
    if log.rating is not None:
        arrays["rating"] = log.rating
    np.savez(out, **arrays)
    stats = {"read_s": read_s, "rows": len(log), "statistics": statistics(data)}
    stats["path"] = "line by line" if declined else "columnar"
    out.with_suffix(".json").write_text(json.dumps(stats))


def derived_files(data_dir: Path, folder: Path) -> list[dict]:
    """The shared rows written in the other raw layouts."""
    u_data = (data_dir / "ml-100k" / "u.data").read_text().splitlines()
    rows = [line.split("\t") for line in u_data]  # user item rating timestamp
    beauty = (data_dir / "amazon-beauty" / "interactions.tsv").read_text().splitlines()[1:]
    cases = []

    dat = folder / "ml-100k-as-dat" / "ratings.dat"
    dat.parent.mkdir()
    dat.write_text("".join("::".join(row) + "\n" for row in rows))
    cases.append({"name": "ml-100k as ratings.dat", "dataset": str(dat), "options": {}})

    latin = folder / "latin1" / "ratings.dat"  # Latin-1 letters in the user ids
    latin.parent.mkdir()
    text = "".join(f"{u}é::{i}::{r}::{t}\n" for u, i, r, t in rows)
    latin.write_bytes(text.encode("iso-8859-1"))
    cases.append({"name": "ml-100k as Latin-1 ratings.dat", "dataset": str(latin), "options": {}})

    crlf = folder / "crlf" / "u.data"
    crlf.parent.mkdir()
    crlf.write_bytes("\r\n".join(u_data).encode() + b"\r\n\r\n")
    cases.append({"name": "ml-100k u.data with CRLF", "dataset": str(crlf), "options": {}})

    ratings = folder / "ratings_ML.csv"
    ratings.write_text("".join(",".join(row) + "\n" for row in rows))
    cases.append({"name": "ml-100k as ratings_*.csv", "dataset": str(ratings), "options": {}})

    table = folder / "ml-100k.tsv.gz"
    with gzip.open(table, "wt") as f:
        f.write("user\titem\tstars\ttime\n" + "".join("\t".join(row) + "\n" for row in rows))
    options = {"user_col": "user", "item_col": "item", "time_col": "time"}
    options |= {"rating_col": "stars", "min_rating": 4.0}
    cases.append(
        {"name": "ml-100k as .tsv.gz, min_rating 4", "dataset": str(table), "options": options}
    )

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = folder / "ml-100k.parquet"  # integer users, text items, float ratings
    columns = list(zip(*rows, strict=True))
    pq.write_table(
        pa.table(
            {
                "user": pa.array([int(u) for u in columns[0]], pa.int64()),
                "item": pa.array([f" i{i}" for i in columns[1]]),
                "stars": pa.array([float(r) for r in columns[2]]),
                "time": pa.array([int(t) for t in columns[3]], pa.int64()),
            }
        ),
        parquet,
    )
    options = {"user_col": "user", "item_col": "item", "time_col": "time"}
    options |= {"rating_col": "stars", "min_rating": 3.0}
    cases.append(
        {"name": "ml-100k as Parquet, min_rating 3", "dataset": str(parquet), "options": options}
    )

    reviews = folder / "reviews_Beauty_5.json.gz"
    with gzip.open(reviews, "wt") as f:
        for line in beauty:
            user, item, when = line.split("\t")
            review = {"reviewerID": f"A{user}", "asin": f"B{item:0>9}", "unixReviewTime": int(when)}
            f.write(json.dumps({**review, "overall": 5.0, "summary": "ok"}) + "\n")
    cases.append(
        {"name": "amazon-beauty as reviews JSON.gz", "dataset": str(reviews), "options": {}}
    )
    return cases


def unpack(revision: str, folder: Path) -> Path:
    """``src`` of ``revision``, unpacked into ``folder``, for PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src/hymoerec"],
        check=True,
        capture_output=True,
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "src.tar").write_bytes(archive)
    with tarfile.open(folder / "src.tar") as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def run_side(source: Path, case: dict, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--worker", json.dumps(case), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{case['name']} ({source}): {done.stderr.strip().splitlines()[-1]}")
    return dict(json.loads(out.with_suffix(".json").read_text()))


def identical(old: Path, new: Path) -> list[str]:
    """The arrays that differ in value or dtype."""
    a, b = np.load(old), np.load(new)
    differ = [name for name in ARRAYS if (name in a.files) != (name in b.files)]
    for name in set(a.files) & set(b.files):
        if a[name].dtype != b[name].dtype or not np.array_equal(a[name], b[name]):
            differ.append(name)
    return sorted(differ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--reference", default=REFERENCE, help="git revision to compare with")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker[0]), Path(args.worker[1]))
        return

    with tempfile.TemporaryDirectory(prefix="hymoerec-identity-") as scratch:
        folder = Path(scratch)
        old_src = unpack(args.reference, folder / "old")
        cases = [
            {"name": name, "dataset": name, "data_dir": str(args.data_dir), "options": {}}
            for name in ("ml-1m", "ml-100k", "amazon-beauty")
        ]
        (folder / "files").mkdir()
        cases += derived_files(args.data_dir, folder / "files")
        print(f"reference {args.reference[:12]} against this checkout")
        print(
            "| case | rows | users | items | interactions | log arrays | prepared arrays "
            "| statistics | read s, old | read s, new | new reader |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        failed = False
        for index, case in enumerate(cases):
            old_out, new_out = folder / f"old-{index}.npz", folder / f"new-{index}.npz"
            old = run_side(old_src, case, old_out)
            new = run_side(ROOT / "src", case, new_out)
            differ = identical(old_out, new_out)
            log_ok = not set(differ) & {"user", "item", "timestamp", "rating"}
            prepared_ok = not set(differ) & {"offsets", "items", "users", "item_ids"}
            stats_ok = old["statistics"] == new["statistics"]
            failed |= not (log_ok and prepared_ok and stats_ok)
            s = new["statistics"]
            print(
                f"| {case['name']} | {new['rows']:,} | {s['users']:,} | {s['items']:,} | "
                f"{s['interactions']:,} | {'identical' if log_ok else 'DIFFER'} | "
                f"{'identical' if prepared_ok else 'DIFFER ' + ', '.join(differ)} | "
                f"{'identical' if stats_ok else 'DIFFER'} | {old['read_s']:.2f} | "
                f"{new['read_s']:.2f} | {new['path']} |",
                flush=True,
            )
    if failed:
        raise SystemExit("the two revisions differ")


if __name__ == "__main__":
    main()

"""Malformed inputs and damaged artifacts through the command line: how many give a clear
error, a correct result, a traceback, or a silently wrong result.

Each case writes a small file (or damages a copy of a tiny trained run), runs one
``hymoerec`` command in a subprocess and sorts the outcome:

- clear: non-zero exit, no traceback, and a last stderr line that starts ``hymoerec:``,
  names the file (and the line, where the case says which) and is under 300 characters;
- correct: exit 0 and the result the case expects (checked against a simple reading of
  the content the case wrote);
- traceback: a Python traceback on stderr;
- silently wrong: exit 0 with a result other than the expected one (or a damaged file
  accepted);
- unclear: any other failure (a message without the file, far too long, ...).

``--src`` runs another checkout's code (its ``src`` folder goes first on PYTHONPATH), so
the same cases measure a branch before and after a change::

    git archive main src | tar -x -C /tmp/main-src
    OMP_NUM_THREADS=1 python benchmarks/malformed_probe.py --src /tmp/main-src/src
    OMP_NUM_THREADS=1 python benchmarks/malformed_probe.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORE = ["--user-core", "3", "--item-core", "1"]  # nothing of the small files is filtered


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@dataclass
class Case:
    name: str
    issue: str  # which item of the report it probes
    run: Callable[[Path], tuple[Outcome, Any]]  # -> outcome, context for check
    names: str = ""  # the file the error must name
    line: int | None = None  # the line the error must name
    check: Callable[[Outcome, Any], bool] | None = None  # correct result on exit 0
    expect_error: bool = False  # exit 0 is wrong whatever it prints
    extra: dict[str, Any] = field(default_factory=dict)


class Runner:
    def __init__(self, src: Path, work: Path) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": str(src),
            "OMP_NUM_THREADS": "1",
            "HYMOEREC_CACHE": str(work / "default-cache"),
        }

    def __call__(self, *args: str, timeout: float = 600) -> Outcome:
        command = [sys.executable, "-m", "hymoerec", *args]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        return Outcome(done.returncode, done.stdout, done.stderr)


def classify(case: Case, outcome: Outcome, context: Any) -> str:
    if "Traceback (most recent call last)" in outcome.err:
        return "traceback"
    if outcome.code == 0:
        if case.expect_error:
            return "silently wrong"
        ok = case.check is not None and case.check(outcome, context)
        return "correct" if ok else "silently wrong"
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    clear = (
        last.startswith("hymoerec:")
        and len(last) < 300
        and (not case.names or case.names in last)
        and (case.line is None or f"line {case.line}" in last)
    )
    return "clear" if clear else "unclear"


def stats_check(users: int, items: int, interactions: int) -> Callable[[Outcome, Any], bool]:
    def check(outcome: Outcome, _: Any) -> bool:
        stats = json.loads(outcome.out)
        return (stats["users"], stats["items"], stats["interactions"]) == (
            users,
            items,
            interactions,
        )

    return check


def cached_sequence(cache: Path, user: str) -> list[str]:
    """The cached chronological sequence of ``user`` (external item ids)."""
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    offsets = np.load(entry / "offsets.npy")
    items = np.load(entry / "items.npy")
    users = np.load(entry / "users.npy").tolist()
    ids = np.load(entry / "item_ids.npy")
    u = users.index(user)
    return ids[items[offsets[u] : offsets[u + 1]] - 1].tolist()


# ----------------------------------------------------------------------- reader cases


SEQ = ("--format", "sequences")  # lines of four fields could also be a headerless table


def interruptible() -> None:
    """In the child: Ctrl-C back to its default, which a shell running this probe in the
    background sets to ignored (and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def reader_cases(hymoerec: Runner) -> list[Case]:
    def stats(file: Path, *options: str, cache: Path | None = None) -> Outcome:
        cache = cache or file.parent / "cache"
        return hymoerec("data", "stats", str(file), "--cache-dir", str(cache), *CORE, *options)

    def udata(tmp: Path) -> Path:  # 4 users x 3 ratings, ratings 1..3, Unix timestamps
        rows = [f"{u}\t{10 + i}\t{1 + i}\t{881250949 + i}" for u in range(4) for i in range(3)]
        path = tmp / "u.data"
        path.write_text("\n".join(rows) + "\n")
        return path

    def sequences(tmp: Path) -> Path:
        path = tmp / "seq.txt"
        path.write_text("".join(f"u{u} a b c\n" for u in range(4)))
        return path

    def table(tmp: Path, name: str = "d.csv", header: str = "user,item,time") -> Path:
        rows = [f"u{u},i{i},{i}" for u in range(4) for i in range(3)]
        path = tmp / name
        path.write_text(header + "\n" + "\n".join(rows) + "\n")
        return path

    cases = [
        Case(
            "--user-col with the ml-100k format",
            "7",
            lambda t: (stats(udata(t), "--json", "--user-col", "user"), None),
            names="--user-col",
            expect_error=True,
        ),
        Case(
            "--min-rating with the sequences format",
            "7",
            lambda t: (stats(sequences(t), "--json", *SEQ, "--min-rating", "3"), None),
            names="--min-rating",
            expect_error=True,
        ),
        Case(
            "--user-col with the sequences format",
            "7",
            lambda t: (stats(sequences(t), "--json", *SEQ, "--user-col", "u"), None),
            names="--user-col",
            expect_error=True,
        ),
        Case(
            "--format table without column options (usual names found)",
            "7",
            lambda t: (stats(table(t), "--json", "--format", "table"), None),
            check=stats_check(4, 3, 12),
        ),
        Case(
            "--format table without --time-col (optional)",
            "7",
            lambda t: (stats(table(t), "--json", "--user-col", "user", "--item-col", "item"), None),
            check=stats_check(4, 3, 12),
        ),
    ]

    def big_field(tmp: Path) -> tuple[Outcome, None]:
        path = tmp / "reviews.csv"
        rows = [
            f"u{u},i{i},{i},{'x' * (200_000 if u == 1 else 5)}" for u in range(4) for i in range(3)
        ]
        path.write_text("user,item,time,text\n" + "\n".join(rows) + "\n")
        return stats(path, "--json", "--user-col", "user", "--item-col", "item"), None

    cases.append(Case("a CSV field over 128 KB", "7", big_field, check=stats_check(4, 3, 12)))

    def reviews(tmp: Path, special: str) -> Path:
        lines = [
            json.dumps({"reviewerID": f"u{u}", "asin": f"i{i}", "unixReviewTime": 100 + i})
            for u in range(4)
            for i in range(3)
        ]
        lines[1] = special
        path = tmp / "reviews_Probe_5.json"
        path.write_text("\n".join(lines) + "\n")
        return path

    nested = '{"reviewerID": "u0", "asin": "i1", "unixReviewTime": 101, "x": ' + "[" * 100_000
    nested += "]" * 100_000 + "}"
    cases.append(
        Case(
            "deeply nested JSON in a reviews line",
            "7",
            lambda t: (stats(reviews(t, nested), "--json"), None),
            names="reviews_Probe_5.json",
            line=2,
            check=stats_check(4, 3, 12),
        )
    )
    huge = '{"reviewerID": "u0", "asin": "i1", "unixReviewTime": ' + "9" * 5000 + "}"
    cases.append(
        Case(
            "a 5000-digit number in a reviews line",
            "9",
            lambda t: (stats(reviews(t, huge), "--json"), None),
            names="reviews_Probe_5.json",
            line=2,
            expect_error=True,
        )
    )

    def parquet_list(tmp: Path) -> tuple[Outcome, None]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp / "lists.parquet"
        users = [[u] for u in range(4) for _ in range(3)]
        table = pa.table({"user": users, "item": [f"i{i}" for _ in range(4) for i in range(3)]})
        pq.write_table(table, path)
        return stats(path, "--json", "--user-col", "user", "--item-col", "item"), None

    cases.append(
        Case(
            "a Parquet list column as ids",
            "7",
            parquet_list,
            names="lists.parquet",
            expect_error=True,
        )
    )

    def separator(tmp: Path) -> tuple[Outcome, None]:
        # comma fields user,item,t,x then tab fields user item t: two valid readings
        rows = []
        for r in range(36):
            csv_part = f"cu{r % 6},ci{r % 9},{r},x"
            rows.append(f"{csv_part}\ttu{r % 12}\tti{(r * 5) % 12}\t{r}")
        content = "user,item,t,x\tuser\titem\tt\n" + "\n".join(rows) + "\n"
        (tmp / "d.csv").write_text(content)
        (tmp / "d.tsv").write_text(content)
        options = ("--json", "--user-col", "user", "--item-col", "item", "--time-col", "t")
        first = stats(tmp / "d.csv", *options)
        assert first.code == 0, first.err
        return stats(tmp / "d.tsv", *options), None

    cases.append(
        Case(
            "the same bytes read as d.csv, then as d.tsv (cache key)",
            "8",
            separator,
            check=stats_check(12, 12, 36),
        )
    )

    def uint64_parquet(tmp: Path) -> tuple[Outcome, Path]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp / "times.parquet"
        times = [2**64 - 1, 2**63, 5] + [1, 2, 3] * 3
        table = pa.table(
            {
                "user": ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3,
                "item": ["late", "middle", "early"] + ["x", "y", "z"] * 3,
                "t": pa.array(times, type=pa.uint64()),
            }
        )
        pq.write_table(table, path)
        cache = tmp / "cache"
        options = ("--user-col", "user", "--item-col", "item", "--time-col", "t")
        return hymoerec(
            "data", "prepare", str(path), "--cache-dir", str(cache), *CORE, *options
        ), cache

    cases.append(
        Case(
            "Parquet uint64 timestamps >= 2**63",
            "8",
            uint64_parquet,
            names="times.parquet",
            check=lambda _, cache: cached_sequence(cache, "a") == ["early", "middle", "late"],
        )
    )

    def big_csv_times(tmp: Path) -> tuple[Outcome, Path]:
        path = tmp / "t.csv"
        rows = ["a,late,9223372036854775809", "a,middle,9223372036854775808", "a,early,1"]
        rows += [f"{u},{i},{n}" for u in "bcd" for n, i in enumerate("xyz")]
        path.write_text("user,item,t\n" + "\n".join(rows) + "\n")
        cache = tmp / "cache"
        options = ("--user-col", "user", "--item-col", "item", "--time-col", "t")
        return hymoerec(
            "data", "prepare", str(path), "--cache-dir", str(cache), *CORE, *options
        ), cache

    cases.append(
        Case(
            "CSV timestamps in [2**63, 2**64)",
            "8",
            big_csv_times,
            names="t.csv",
            line=2,
            check=lambda _, cache: cached_sequence(cache, "a") == ["early", "middle", "late"],
        )
    )

    def leading_space(tmp: Path) -> tuple[Outcome, None]:
        path = tmp / "s.csv"
        rows = ["4,a,1", "4,b,2", " 4,c,3", "5,a,1", "5,b,2", "5,c,3"]
        path.write_text("user,item,t\n" + "\n".join(rows) + "\n")
        options = ("--json", "--user-col", "user", "--item-col", "item", "--time-col", "t")
        return stats(path, *options), None

    cases.append(
        Case(
            "an id with a leading space",
            "8",
            leading_space,
            names="s.csv",
            line=4,
            check=stats_check(2, 3, 6),
        )
    )

    def huge_line(tmp: Path) -> tuple[Outcome, None]:
        path = tmp / "big.txt"
        path.write_text("u1 a b c\n" + "x" * 5_000_000 + "\nu2 a b c\n")
        return stats(path, "--json"), None

    cases.append(
        Case(
            "a 5 MB single-token line in a sequences file",
            "9",
            huge_line,
            names="big.txt",
            line=2,
            expect_error=True,
        )
    )

    def txt_table(tmp: Path) -> tuple[Outcome, None]:
        path = table(tmp, "d.txt")
        options = ("--json", "--format", "table", "--user-col", "user", "--item-col", "item")
        return stats(path, *options, "--time-col", "time"), None

    cases.append(
        Case(
            "--format table on a .txt file (separator from the header)",
            "9",
            txt_table,
            check=stats_check(4, 3, 12),
        )
    )

    def unclosed(tmp: Path) -> tuple[Outcome, None]:
        path = tmp / "q.csv"
        rows = [f"u{u},i{i},{i}" for u in range(4) for i in range(3)]
        rows[3] = 'u1,"i0,0'  # line 5
        path.write_text("user,item,t\n" + "\n".join(rows) + "\n")
        options = ("--json", "--user-col", "user", "--item-col", "item", "--time-col", "t")
        return stats(path, *options), None

    cases.append(Case("an unclosed quote", "9", unclosed, names="q.csv", line=5, expect_error=True))

    def named_min_rating(tmp: Path) -> tuple[Outcome, None]:
        (tmp / "data" / "ml-100k").mkdir(parents=True)
        rows = [
            f"{u}\t{10 + i}\t{5 if i < 3 else 1}\t{100 + i}" for u in range(4) for i in range(4)
        ]
        (tmp / "data" / "ml-100k" / "u.data").write_text("\n".join(rows) + "\n")
        args = ("--data-dir", str(tmp / "data"), "--json", "--min-rating", "4")
        return stats(Path("ml-100k"), *args, cache=tmp / "cache"), None

    cases.append(
        Case(
            "--min-rating with a named dataset (found while fixing)",
            "8",
            named_min_rating,
            check=stats_check(4, 3, 12),
        )
    )
    return cases


# --------------------------------------------------------------------- artifact cases

TINY = [
    "model_options.hidden_size=8",
    "model_options.moe.router_hidden=4",
    "train.max_len=10",
    "train.batch_size=16",
    "train.threads=1",
    "train.warmup_steps=1",
]


def synthetic(folder: Path) -> Path:
    """60 users, 12 items each out of 40, in a sequences file."""
    rng = np.random.default_rng(0)
    lines = [f"u{u} " + " ".join(f"i{i}" for i in rng.integers(0, 40, 12)) for u in range(60)]
    path = folder / "synthetic.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def train_command(data: Path, out: Path, cache: Path, epochs: int) -> list[str]:
    command = ["train", "--model", "hymoerec", "--dataset", str(data), "--out", str(out)]
    for setting in [*TINY, f"train.epochs={epochs}", f"data.cache_dir={cache}"]:
        command += ["--set", setting]
    return [*command, "--quiet"]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_last_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[-3] ^= 0x40
    path.write_bytes(bytes(content))


def damage_weights(kind: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        weights = run / "model.safetensors"
        if kind == "truncated":
            truncate(weights)
        elif kind == "empty":
            weights.write_bytes(b"")
        elif kind == "random":
            weights.write_bytes(np.random.default_rng(0).bytes(4096))
        elif kind == "huge header":
            weights.write_bytes((2**62).to_bytes(8, "little") + b"{}")
        elif kind == "flipped byte":
            flip_last_byte(weights)
        else:
            import torch
            from safetensors.torch import load_file, save_file

            tensors = load_file(str(weights))
            name = sorted(tensors)[0]
            if kind == "wrong shape":
                tensors[name] = torch.zeros(3, 3)
            else:
                del tensors[name]
            save_file(tensors, str(weights))

    return damage


def artifact_cases(hymoerec: Runner, work: Path) -> list[Case]:
    data = synthetic(work)
    cache = work / "train-cache"
    run = work / "run"
    trained = hymoerec(*train_command(data, run, cache, 1))
    if trained.code != 0:
        raise SystemExit(f"training the probe run failed:\n{trained.err[-2000:]}")
    reference = hymoerec("recommend", str(run), "--user", "u1", "--json")

    def copy(tmp: Path) -> Path:
        target = tmp / "run"
        shutil.copytree(run, target)
        return target

    def on_run(
        command: str, damage: Callable[[Path], None], file: str
    ) -> Callable[[Path], tuple[Outcome, None]]:
        def go(tmp: Path) -> tuple[Outcome, None]:
            target = copy(tmp)
            damage(target)
            if command == "evaluate":
                return hymoerec("evaluate", str(target), "--json"), None
            return hymoerec("recommend", str(target), "--user", "u1", "--json"), None

        return go

    cases = []
    kinds = ("truncated", "empty", "random", "huge header", "wrong shape", "missing tensor")
    for command in ("evaluate", "recommend"):
        for kind in (*kinds, "flipped byte"):
            cases.append(
                Case(
                    f"{command}: model.safetensors {kind}",
                    "10",
                    on_run(command, damage_weights(kind), "model.safetensors"),
                    names="model.safetensors",
                    expect_error=True,
                )
            )
        if command == "recommend":  # a run written before checksums were recorded
            for kind in kinds:
                damage = damage_weights(kind)

                def unchecked(run: Path, damage: Callable[[Path], None] = damage) -> None:
                    (run / "checksums.json").unlink(missing_ok=True)
                    damage(run)

                cases.append(
                    Case(
                        f"{command}: model.safetensors {kind}, no checksums.json",
                        "10",
                        on_run(command, unchecked, "model.safetensors"),
                        names="model.safetensors",
                        expect_error=True,
                    )
                )
        cases.append(
            Case(
                f"{command}: config.yaml not YAML",
                "10",
                on_run(command, lambda r: (r / "config.yaml").write_text("model: [\n  :\t"), ""),
                names="config.yaml",
                expect_error=True,
            )
        )
    for kind, damage in (("truncated", truncate), ("empty", lambda p: p.write_bytes(b""))):
        cases.append(
            Case(
                f"recommend: run's dataset items.npy {kind}",
                "10",
                on_run("recommend", lambda r, d=damage: d(r / "dataset" / "items.npy"), ""),
                names="items.npy",
                expect_error=True,
            )
        )

        def cache_damage(tmp: Path, d: Callable[[Path], None] = damage) -> tuple[Outcome, None]:
            # a run evaluates from its own data copy; the shared cache entry is what
            # `data stats` and the next run read
            private = tmp / "cache"
            shutil.copytree(cache, private)
            (entry,) = [p for p in private.iterdir() if not p.name.startswith(".")]
            d(entry / "items.npy")
            stats = ("data", "stats", str(data), "--cache-dir", str(private))
            return hymoerec(*stats), None

        cases.append(
            Case(
                f"data stats: cache items.npy {kind}",
                "10",
                cache_damage,
                names="items.npy",
                expect_error=True,
            )
        )

    def interrupted(tmp: Path) -> Path:
        """A run killed after its first checkpoint: OUT.partial/ with checkpoint.pt."""
        out = tmp / "resumable"
        command = [sys.executable, "-m", "hymoerec", *train_command(data, out, cache, 50)]
        child = subprocess.Popen(command, env=hymoerec.env, stderr=subprocess.DEVNULL)
        checkpoint = tmp / "resumable.partial" / "checkpoint.pt"
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.kill()
        child.wait()
        return out

    def resume_damaged(damage: Callable[[Path], None]) -> Callable[[Path], tuple[Outcome, None]]:
        def go(tmp: Path) -> tuple[Outcome, None]:
            out = interrupted(tmp)
            damage(tmp / "resumable.partial" / "checkpoint.pt")
            return hymoerec(*train_command(data, out, cache, 50), "--resume"), None

        return go

    for kind, damage in (
        ("truncated", truncate),
        ("empty", lambda p: p.write_bytes(b"")),
        ("random", lambda p: p.write_bytes(np.random.default_rng(1).bytes(4096))),
    ):
        cases.append(
            Case(
                f"train --resume: checkpoint.pt {kind}",
                "10",
                resume_damaged(damage),
                names="checkpoint.pt",
                expect_error=True,
            )
        )

    def resume_bad_config(tmp: Path) -> tuple[Outcome, None]:
        out = interrupted(tmp)
        (tmp / "resumable.partial" / "config.yaml").write_text("model: [\n  :\t")
        return hymoerec(*train_command(data, out, cache, 50), "--resume"), None

    cases.append(
        Case(
            "train --resume: config.yaml not YAML",
            "10",
            resume_bad_config,
            names="config.yaml",
            expect_error=True,
        )
    )

    def sigint(tmp: Path) -> tuple[Outcome, Path]:
        out = tmp / "interrupted"
        command = [sys.executable, "-m", "hymoerec", *train_command(data, out, cache, 50)]
        child = subprocess.Popen(
            command,
            env=hymoerec.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=interruptible,
        )
        checkpoint = tmp / "interrupted.partial" / "checkpoint.pt"
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out_text, err_text = child.communicate(timeout=120)
        return Outcome(child.returncode, out_text, err_text), tmp

    def sigint_check(outcome: Outcome, tmp: Any) -> bool:
        return False  # exit 0 after SIGINT is wrong

    cases.append(
        Case(
            "SIGINT after the first checkpoint",
            "11",
            sigint,
            names="--resume",
            check=sigint_check,
            extra={"exit": 130},
        )
    )

    def evaluate_json(tmp: Path) -> tuple[Outcome, None]:
        return hymoerec("evaluate", str(run), "--json"), None

    cases.append(
        Case(
            "evaluate RUN --json: metrics under 'metrics' as for the reference models",
            "also",
            evaluate_json,
            check=lambda outcome, _: "test" in json.loads(outcome.out).get("metrics", {}),
        )
    )
    cases.append(
        Case(
            "recommend on the undamaged run (control)",
            "control",
            lambda tmp: (hymoerec("recommend", str(run), "--user", "u1", "--json"), None),
            check=lambda outcome, _: outcome.out == reference.out,
        )
    )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=str(REPO / "src"), help="the src folder to run")
    parser.add_argument("--json", help="also write the outcomes to this JSON file")
    parser.add_argument("--only", help="run only cases whose name contains this")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        hymoerec = Runner(Path(args.src).resolve(), work)
        cases = reader_cases(hymoerec) + artifact_cases(hymoerec, work)
        for number, case in enumerate(cases):
            if args.only and args.only not in case.name:
                continue
            tmp = work / f"case-{number}"
            tmp.mkdir()
            outcome, context = case.run(tmp)
            kind = classify(case, outcome, context)
            if kind == "clear" and "not" in case.extra and case.extra["not"] in outcome.err:
                kind = "unclear"
            if "exit" in case.extra and outcome.code != case.extra["exit"] and kind == "clear":
                kind = "unclear"
            last = ([line for line in outcome.err.splitlines() if line.strip()] or [""])[-1]
            results.append({"case": case.name, "item": case.issue, "outcome": kind, "last": last})
            print(f"{kind:15} [{case.issue:>7}] {case.name}")
            if kind != "correct":
                print(f"{'':15}   exit {outcome.code}: {last[:200]}")
    counts = Counter(r["outcome"] for r in results)
    order = ("clear", "correct", "traceback", "silently wrong", "unclear")
    print(f"\n{len(results)} cases: " + ", ".join(f"{counts[k]} {k}" for k in order))
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "cases": results}, indent=2))


if __name__ == "__main__":
    main()

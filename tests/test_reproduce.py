"""`hymoerec reproduce` on ML-100K with a tiny config: one record per run with what the
results document needs, recorded runs skipped, the document rendered from the records."""

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hymoerec import record, reproduce
from hymoerec.cli import main
from hymoerec.config import ConfigError
from hymoerec.record import decode_ranks
from hymoerec.training.checkpoint import CHECKPOINT

TINY_CONFIG = """model: hymoerec
dataset: ml-100k
model_options: {hidden_size: 16, moe: {router_hidden: 8}}
train: {epochs: 1, max_len: 20, batch_size: 64, threads: 1}
"""


def test_reproduce_records_runs_then_skips_them(
    shared_data: Path, tmp_path: Path, cache_root: Path, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # the checkout moves on while the runs train: records name the code that was imported
    versions = iter([{"commit": "a" * 40, "dirty": False}])
    monkeypatch.setattr(
        reproduce, "code_version", lambda: next(versions, {"commit": "b" * 40, "dirty": True})
    )
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "ml-100k-hymoerec.yaml").write_text(
        TINY_CONFIG + f"data: {{cache_dir: {cache_root}}}\n"
    )
    (configs / "ablations.yaml").write_text(
        "e4-k1: {about: top-1, base: hymoerec, set: [model_options.moe.top_k=1]}\n"
    )
    results = tmp_path / "results"
    args = ["reproduce", "--datasets", "ml-100k", "--models", "hymoerec", "--seeds", "7"]
    args += ["--ablations", "e4-k1", "--ablation-seeds", "7", "--configs", str(configs)]
    args += ["--runs-dir", str(tmp_path / "runs"), "--results", str(results)]
    args += ["--data-dir", str(shared_data), "--quiet"]
    assert main(args) == 0
    assert "2 new records" in capsys.readouterr().out
    main_run = json.loads((results / "ml-100k--hymoerec--seed7.json").read_text())
    ablation = json.loads((results / "ml-100k--e4-k1--seed7.json").read_text())
    assert (main_run["model"], main_run["seed"], main_run["ablation"]) == ("hymoerec", 7, None)
    assert ablation["ablation"] == "e4-k1"
    assert ablation["config"]["model_options"]["moe"]["top_k"] == 1
    assert main_run["config"]["train"]["seed"] == 7 and main_run["epochs_run"] == 1
    assert main_run["code"] == ablation["code"] == {"commit": "a" * 40, "dirty": False}
    assert {"platform", "cpu", "torch", "device", "bf16_native"} <= set(main_run["machine"])
    # the per-user ranks give back the recorded test metrics
    ranks = decode_ranks(main_run["test_rank_top10"])
    assert len(ranks) == main_run["users"] == 943
    assert ((ranks > 0).mean()) == main_run["test"]["HR@10"]
    assert not main_run["capped"] and main_run["stopped"] == "epochs"
    excluded = main_run["test_history_excluded"]
    assert excluded["HR@10"] >= main_run["test"]["HR@10"]  # fewer items can only lift ranks
    # one point per epoch, the wall time at the end of training
    assert len(main_run["elapsed_by_epoch"]) == len(main_run["valid_ndcg10_by_epoch"]) == 1
    assert main_run["elapsed_by_epoch"][-1] > 0 and main_run["train_seconds"] > 0

    # a record written without the history-excluded figures gets them from its run
    path = results / "ml-100k--e4-k1--seed7.json"
    later = (*record.EXCLUDED, "elapsed_by_epoch")  # fields newer than the first records
    stripped = {k: v for k, v in ablation.items() if k not in later}
    record.write_json(path, stripped)
    rescore = ["results", "rescore", "--results", str(results), "--runs-dir"]
    assert main([*rescore, str(tmp_path / "runs")]) == 0
    assert "1 records re-scored" in capsys.readouterr().out
    assert json.loads(path.read_text()) == ablation  # the same figures as at the run's end
    record.write_json(path, stripped)
    assert main([*rescore, str(tmp_path / "elsewhere")]) == 0  # no run directory: untouched
    assert "0 records re-scored" in capsys.readouterr().out
    assert json.loads(path.read_text()) == stripped
    record.write_json(path, ablation)

    assert main(args) == 0  # everything recorded: nothing trains again
    assert "2 runs planned, 2 already recorded" in capsys.readouterr().out
    out = tmp_path / "results.md"
    render = ["results", "render", "--results", str(results), "--out", str(out)]
    assert main([*render, "--ablations", str(configs / "ablations.yaml")]) == 0
    text = out.read_text()
    assert "| e4-k1 | top-1 | 1 |" in text
    history_excluded = text.split("### ml-100k, history excluded")[1]
    assert f"| HyMoERec | 1 | {excluded['HR@5']:.4f} | n/g |" in history_excluded

    # --dry-run says where each run stands, from what is on disk
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ml-100k--hymoerec--seed7 +done ", out)
    assert re.search(r"ml-100k--e4-k1--seed7 +done ", out)
    (results / "ml-100k--hymoerec--seed7.json").unlink()  # trained, its record not written
    key = "ml-100k--e4-k1--seed7"
    (results / f"{key}.json").unlink()
    partial = tmp_path / "runs" / f"{key}.partial"
    (tmp_path / "runs" / key).rename(partial)  # as if interrupted after a second epoch
    first = json.loads((partial / "metrics.jsonl").read_text())
    second = {**first, "epoch": 2, "valid": {**first["valid"], "NDCG@10": 0.5}, "elapsed": 7200}
    cut = json.dumps({**second, "epoch": 3})[:40]  # killed while it wrote a third line
    (partial / "metrics.jsonl").write_text(f"{json.dumps(first)}\n{json.dumps(second)}\n{cut}")
    (partial / CHECKPOINT).write_bytes(b"")
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs planned, 0 already recorded" in out
    assert re.search(r"ml-100k--hymoerec--seed7 +trained ", out)
    assert re.search(r"ml-100k--e4-k1--seed7 +resume ", out)
    assert "2 epochs logged, best valid NDCG@10 0.5000 at epoch 2, 2.0 h so far" in out
    (partial / CHECKPOINT).unlink()  # killed before its first checkpoint: it starts afresh
    assert main([*args, "--dry-run"]) == 0
    assert re.search(r"ml-100k--e4-k1--seed7 +to run ", capsys.readouterr().out)


def test_code_version_names_the_checkout() -> None:
    code = record.code_version()
    assert len(code["commit"]) == 40 or code == {"commit": "unknown", "dirty": None}


def test_ablations_file_names_its_comparisons_and_rejects_bad_entries(tmp_path: Path) -> None:
    shipped = reproduce.load_ablations(Path(__file__).parents[1] / "configs" / "ablations.yaml")
    assert shipped["sasrec-hymoe"].compare == "sasrec"  # measured against its own backbone
    assert shipped["no-balance"].compare == "hymoerec"  # the default
    path = tmp_path / "ablations.yaml"
    for entry, problem in [
        ("{about: x, base: hymoerec}", "needs about, base and set"),
        ("{about: x, base: hymoerec, set: [], sets: []}", "needs about, base and set"),
        ("{about: x, base: mamba, set: []}", "unknown base 'mamba'"),
        ("{about: x, base: sasrec, set: [], compare: sas}", "unknown compare 'sas'"),
    ]:
        path.write_text(f"odd: {entry}\n")
        with pytest.raises(ConfigError, match=problem):
            reproduce.load_ablations(path)


def test_a_run_another_process_is_training_is_passed_over(tmp_path: Path, capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "ml-100k-hymoerec.yaml").write_text(TINY_CONFIG)
    (configs / "ablations.yaml").write_text("{}\n")
    runs = tmp_path / "runs"
    args = ["reproduce", "--datasets", "ml-100k", "--models", "hymoerec", "--seeds", "7,8"]
    args += ["--ablations", "none", "--configs", str(configs), "--runs-dir", str(runs)]
    args += ["--results", str(tmp_path / "results"), "--quiet"]
    key, other = "ml-100k--hymoerec--seed7", "ml-100k--hymoerec--seed8"
    runs.mkdir()
    holder = subprocess.Popen(  # other workers of the same plan, training both runs
        [sys.executable, "-c", HOLD_LOCK, *(str(runs / f"{k}.lock") for k in (key, other))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert main([*args, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"{key} +running ", out) and "no checkpoint yet" in out
        partial = runs / f"{key}.partial"
        partial.mkdir()
        epoch = {"epoch": 1, "valid": {"NDCG@10": 0.25}, "elapsed": 360}
        (partial / "metrics.jsonl").write_text(json.dumps(epoch) + "\n")
        (partial / CHECKPOINT).write_bytes(b"")
        assert main([*args, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"{key} +running ", out)
        assert "1 epoch logged, best valid NDCG@10 0.2500 at epoch 1, 0.1 h so far" in out
        (runs / other).mkdir()  # trained by its worker, which now writes the record
        (runs / other / "final.json").write_text("{}")
        assert main([*args, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"{other} +running ", out)
        assert "finished training; its record is being written" in out
        (runs / other / "final.json").unlink()
        (runs / other).rmdir()

        with caplog.at_level(logging.INFO, logger="hymoerec.reproduce"):
            assert main(args) == 0  # no data needed: the run is passed over before loading
        assert "0 new records" in capsys.readouterr().out
        assert f"[1/2] {key}: another process is training it, skipped" in caplog.text
        assert f"[2/2] {other}: another process is training it, skipped" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="hymoerec.reproduce"):
            assert main([*args, "--reverse"]) == 0  # the plan from its end
        assert f"[1/2] {other}: another process" in caplog.text
        assert f"[2/2] {key}: another process" in caplog.text
        assert sorted(path.name for path in partial.iterdir()) == [CHECKPOINT, "metrics.jsonl"]
    finally:
        holder.kill()  # SIGKILL: the operating system drops the lock with the process
        holder.wait()
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"{key} +resume ", out) and re.search(rf"{other} +to run ", out)


HOLD_LOCK = """import sys, time
from filelock import FileLock
locks = [FileLock(path, timeout=0) for path in sys.argv[1:]]
for lock in locks:
    lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_reproduce_passes_the_data_options_to_every_run(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "ml-100k-sasrec.yaml").write_text(
        "model: sasrec\ndataset: ml-100k\ndata:\n  item_core: 3\n"
    )
    options = reproduce.ReproduceOptions(
        configs=configs, data_dir="/d", threads=2, data={"min_rating": 4.0, "user_core": 10}
    )
    config = reproduce.run_config(reproduce.PlannedRun("ml-100k", "sasrec", "sasrec", 1), options)
    assert (config.data.data_dir, config.data.min_rating) == ("/d", 4.0)
    assert (config.data.user_core, config.data.item_core) == (10, 3)  # the config's kept
    assert config.train.threads == 2

"""Train RecBole 1.2.1's own model on our exported files, then score it with our evaluator.

Runs in the harness's own environment (``benchmarks/parity/setup.sh``), never in the
project's:

    benchmarks/parity/.venv/bin/python benchmarks/parity/run_recbole.py \
        --dataset ml-100k --model sasrec --seed 1 --epochs 50 --data-dir ../shared/data

Steps: export the prepared dataset to atomic files (order kept: the position in the
sequence is the timestamp); train with RecBole's trainer, the model's options and the
learning rate of our configs, RecBole's own batching (one padded prefix per target);
take RecBole's own test figures (best validation checkpoint); check that RecBole built
exactly our test histories and targets; then call the trained model's
``full_sort_predict`` on the inputs our evaluator makes and rank with our evaluator,
history kept and excluded. Writes results/parity/DATASET--MODEL--recbole--seedN.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import Any

# RecBole's test phase reloads its own checkpoint (a trusted file this script wrote) with
# torch.load, which torch >= 2.6 refuses by default; this is torch's documented override.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import harness
import numpy as np
import torch
from export import export_atomic
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, get_trainer, init_logger, init_seed
from torch import Tensor

from hymoerec.data.batches import right_padded
from hymoerec.data.cache import load_dataset
from hymoerec.data.protocol import ProtocolConfig, SequenceData


class RecBoleScorer:
    """Our scorer interface over a trained RecBole model: our item ids in, scores of our
    items 0..N out. RecBole numbers the tokens its own way, so ids are mapped both ways;
    histories are widened to RecBole's fixed MAX_ITEM_LIST_LENGTH as its loader does."""

    def __init__(self, model: Any, dataset: Any, num_items: int, max_len: int) -> None:
        self.model = model
        self.max_len = max_len
        tokens = [str(i) for i in range(1, num_items + 1)]
        to_recbole = np.zeros(num_items + 1, dtype=np.int64)
        to_recbole[1:] = dataset.token2id(dataset.iid_field, tokens)
        self.to_recbole = torch.from_numpy(to_recbole)

    @torch.no_grad()
    def __call__(self, histories: Tensor, lengths: Tensor) -> Tensor:
        items = harness.padded_to(self.to_recbole[histories], self.max_len)  # (B, max_len)
        batch = Interaction({self.model.ITEM_SEQ: items, self.model.ITEM_SEQ_LEN: lengths})
        scores = self.model.full_sort_predict(batch).view(len(histories), -1)  # (B, items+1)
        return scores[:, self.to_recbole]  # column j: our item j (column 0: padding)


def recbole_config(args: argparse.Namespace, data_path: Path, name: str, work: Path) -> Config:
    options = harness.TRAIN[args.dataset]
    values = {
        "data_path": str(data_path),
        "checkpoint_dir": str(work / "saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[5,inf)",  # a no-op on our 5-core export
        "item_inter_num_interval": "[5,inf)",
        "MAX_ITEM_LIST_LENGTH": options["max_len"],
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [5, 10],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 6,  # RecBole rounds to 4 by default; the cross-check needs more
        "epochs": args.epochs,
        "stopping_step": options["patience"],
        "learning_rate": options["lr"],
        "train_batch_size": args.batch_size,
        "eval_batch_size": 4096,
        "seed": args.seed,
        "reproducibility": True,
        "device": "cpu",
        "use_gpu": False,
        "show_progress": False,
        "worker": 0,
        **harness.recbole_options(args.dataset, args.model),
    }
    return Config(model=harness.RECBOLE_MODELS[args.model], dataset=name, config_dict=values)


def check_same_inputs(test_data: Any, dataset: Any, data: SequenceData, max_len: int) -> int:
    """RecBole's test users, targets and histories must be ours; returns the users checked."""
    feat = test_data.dataset.inter_feat
    users = dataset.id2token(dataset.uid_field, feat[dataset.uid_field].numpy()).astype(int)
    targets = dataset.id2token(dataset.iid_field, feat[dataset.iid_field].numpy()).astype(int)
    item_list = feat[dataset.iid_field + "_list"].numpy()
    lengths = feat["item_length"].numpy()
    part = data.split("test")
    assert part.targets is not None
    if sorted(users.tolist()) != list(range(data.num_users)):
        raise SystemExit("RecBole's test users differ from ours")
    if not np.array_equal(targets, part.targets[users]):
        raise SystemExit("RecBole's test targets differ from ours")
    ours, our_lengths = right_padded(part.items, part.starts[users], part.ends[users], max_len)
    theirs = np.zeros_like(item_list)
    real = item_list != 0
    theirs[real] = dataset.id2token(dataset.iid_field, item_list[real]).astype(int)
    if not (np.array_equal(lengths, our_lengths) and np.array_equal(theirs, ours)):
        raise SystemExit("RecBole's test histories differ from ours")
    return len(users)


def log_summary(work: Path) -> dict[str, Any]:
    """Per-epoch times and validation NDCG@10 from the log RecBole wrote under ``work``."""
    train, evaluation, valid = [], [], []
    for log in sorted(work.glob("log/*/*.log")):
        for line in log.read_text().splitlines():
            if found := re.search(r"epoch \d+ training \[time: ([\d.]+)s", line):
                train.append(float(found.group(1)))
            if found := re.search(r"evaluating \[time: ([\d.]+)s, valid_score: ([\d.]+)", line):
                evaluation.append(float(found.group(1)))
                valid.append(float(found.group(2)))
    return {
        "train_seconds_by_epoch": train,
        "eval_seconds_by_epoch": evaluation,
        "valid_ndcg10_by_epoch": valid,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.run_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=harness.RECBOLE_BATCH)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--work", type=Path, default=harness.ROOT / "runs" / "parity")
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="skip training: score the best checkpoint a finished run left in its folder",
    )
    args = parser.parse_args()

    source, data = load_dataset(args.dataset, args.data_dir, None, ProtocolConfig())
    name = harness.record_name(args.dataset, args.model, "recbole", args.seed)
    work = args.work / name
    if not args.score_only:
        shutil.rmtree(work, ignore_errors=True)
    # not the dataset's own name: RecBole silently swaps in its bundled copy of "ml-100k"
    atomic_name = f"parity-{args.dataset}"
    export_atomic(data, work / "atomic", atomic_name)
    os.chdir(work)  # RecBole writes its log/ and log_tensorboard/ into the working folder
    config = recbole_config(args, work / "atomic", atomic_name, work)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    counts = (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num)
    if counts != (data.num_users, data.num_items, data.num_interactions):
        raise SystemExit(f"RecBole read {counts}, ours is {data.num_users, data.num_items}")
    train_data, valid_data, test_data = data_preparation(config, dataset)
    max_len = harness.TRAIN[args.dataset]["max_len"]
    checked = check_same_inputs(test_data, dataset, data, max_len)

    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if args.score_only:
        saved = sorted((work / "saved").glob("*.pth"))
        if not saved:
            raise SystemExit(f"{work / 'saved'}: no checkpoint to score")
        checkpoint = torch.load(saved[-1], map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["state_dict"])
        best_valid, best_epoch = {}, checkpoint["epoch"] + 1
        epochs_run = None  # read from RecBole's log below
        own_test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    else:
        _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        epochs_run = len(trainer.train_loss_dict)
        own_test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        saved_state = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
        best_epoch = saved_state["epoch"] + 1
    curve = log_summary(work)
    if epochs_run is None:  # a run stopped from outside: the epochs its log completed
        epochs_run = len(curve["eval_seconds_by_epoch"])
    model.eval()
    report = harness.score(RecBoleScorer(model, dataset, data.num_items, max_len), data, max_len)
    record = {
        "dataset": args.dataset,
        "model": args.model,
        "implementation": "recbole",
        "seed": args.seed,
        "epochs": epochs_run if args.score_only else args.epochs,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "train": {
            "batch_size": args.batch_size,
            "batch_unit": "prefixes",
            "lr": harness.TRAIN[args.dataset]["lr"],
            "max_len": max_len,
            "patience": harness.TRAIN[args.dataset]["patience"],
        },
        "model_options": harness.recbole_options(args.dataset, args.model),
        "recbole_version": __import__("recbole").__version__,
        "source": str(source.path),
        "inputs_checked_users": checked,
        "wall_seconds": round(
            sum(curve["train_seconds_by_epoch"] + curve["eval_seconds_by_epoch"])
        ),
        **curve,
        "own_test": {
            "HR@5": own_test["hit@5"],
            "HR@10": own_test["hit@10"],
            "NDCG@5": own_test["ndcg@5"],
            "NDCG@10": own_test["ndcg@10"],
            "MRR@10": own_test["mrr@10"],
        },
        "own_valid": {key: float(value) for key, value in best_valid.items()},
        **report,
        "command": harness.command(
            "benchmarks/parity/.venv/bin/python benchmarks/parity/run_recbole.py",
            args,
            *(
                ["--batch-size", str(args.batch_size)]
                if args.batch_size != harness.RECBOLE_BATCH
                else []
            ),
        ),
    }
    harness.finish(record, name, f"RecBole's own test NDCG@10 {own_test['ndcg@10']:.4f}; ours: ")


if __name__ == "__main__":
    main()

"""Run configuration: frozen dataclasses per concern, loaded from YAML by the one config
loader (``hymoerec.schema.from_dict``, which model configs share), unknown keys rejected."""

from __future__ import annotations

import codecs
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hymoerec.data.cache import prepare
from hymoerec.data.protocol import TIE_ORDERS, ProtocolConfig, SequenceData
from hymoerec.data.registry import DATA_DIR_ENV, READERS, Source, resolve
from hymoerec.runtime import DeviceError, check_device_name
from hymoerec.schema import ConfigError, from_dict


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is read and filtered: the one data specification shared by
    every command (``--data-dir``, ``--format``, ``--user-col`` ...) and by run configs
    (``data.format``, ``data.user_col`` ...). A run records it resolved: absolute paths,
    the format and columns that were recognised."""

    data_dir: str | None = None  # directory of the named datasets (default $HYMOEREC_DATA)
    cache_dir: str | None = None  # prepared-dataset cache (default $HYMOEREC_CACHE)
    user_core: int = 5  # k-core threshold for users (paper: 5)
    item_core: int = 5  # k-core threshold for items (paper: 5)
    ties: str = "file"  # order of equal timestamps: file, item (id order) or shuffle
    format: str | None = None  # a file's format; None = recognised from its content
    user_col: str | None = None  # table files: user column (None = a usual name, e.g. user_id)
    item_col: str | None = None  # table files: item column (None = a usual name, e.g. item_id)
    time_col: str | None = None  # table files: time column; "" = none, keep the file's order
    rating_col: str | None = None  # table files: rating column (needed by min_rating)
    min_rating: float | None = None  # drop interactions rated below this (rated formats)
    sep: str | None = None  # table files: field separator (None = from suffix or header)
    encoding: str | None = None  # text encoding (None = the format's: latin-1 for .dat)

    def __post_init__(self) -> None:
        if self.ties not in TIE_ORDERS:
            raise ConfigError(f"data.ties={self.ties!r}: must be one of {', '.join(TIE_ORDERS)}")
        for name in ("user_core", "item_core"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name}={getattr(self, name)}: must be at least 1")
        if self.format is not None and self.format not in READERS:
            known = ", ".join(sorted(READERS))
            raise ConfigError(f"data.format={self.format!r}: expected one of {known}")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ConfigError(f"data.encoding={self.encoding!r}: unknown encoding") from None

    def protocol(self) -> ProtocolConfig:
        return ProtocolConfig(self.user_core, self.item_core, self.ties)

    def reader_options(self) -> dict[str, Any]:
        """The reading options given (None = not given), as ``resolve`` takes them."""
        names = ("user_col", "item_col", "time_col", "rating_col", "min_rating", "sep", "encoding")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def relocated(data: DataConfig, data_dir: str | Path | None) -> DataConfig:
    """``data`` of a saved run, its data directory moved to ``data_dir``, else to
    $HYMOEREC_DATA when set: the data of an old run lies where this machine keeps it."""
    moved = data_dir or os.environ.get(DATA_DIR_ENV)
    return data if not moved else dataclasses.replace(data, data_dir=str(moved))


def data_source(dataset: str, data: DataConfig) -> Source:
    """The file ``dataset`` names and how to read it, under the options of ``data``."""
    return resolve(dataset, data.data_dir, data.format, data.reader_options())


def prepare_dataset(dataset: str, data: DataConfig) -> tuple[Source, SequenceData]:
    """``dataset`` read, filtered and split under ``data``, from the cache when possible."""
    source = data_source(dataset, data)
    return source, prepare(source, data.protocol(), data.cache_dir)


# ce: textbook full softmax; chunked_ce: same values and gradients, bounded memory;
# sampled_softmax: sampled softmax with the logQ correction; gbce: gSASRec's gBCE
LOSS_NAMES = ("ce", "chunked_ce", "sampled_softmax", "gbce")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200  # upper bound; early stopping normally ends the run sooner
    batch_size: int = 128  # sequence windows per optimizer step (all positions train at once)
    lr: float = 1e-3  # Adam(W) learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup_steps: int = 0  # linear learning-rate warm-up, in optimizer steps
    schedule: str = "constant"  # after warm-up: constant, or cosine decay to 0 at the last epoch
    bucket: int = 16  # sort each run of this many batches by length (less padding); 0 = off
    window_stride: int = 0  # histories over max_len: new targets per window; 0 = max_len
    patience: int = 10  # validation rounds without NDCG@10 improvement before stopping
    max_len: int = 0  # history length; 0 = the dataset's (200 ML-1M, 50 Beauty)
    seed: int = 2024  # seeds weights, shuffling and masking: one seed, one result
    eval_batch_size: int = 256  # users ranked at once (larger batches thrash the CPU cache)
    eval_item_chunk: int = 65_536  # items ranked at once: bounds memory on big catalogues; 0 = all
    device: str = "auto"  # auto = cuda when available, else cpu
    loss: str = "chunked_ce"  # one of LOSS_NAMES above; docs/scaling.md compares them
    # sampled negatives: drawn per 64 targets (sampled_softmax), per 8 x ceil(S / 256) (gbce)
    negatives: int = 256
    gbce_t: float = 0.75  # gBCE calibration t in [0, 1]: 0 = plain BCE (gSASRec uses 0.75)
    # where sampled_softmax draws its negatives: "uniform" (every item alike, as gSASRec
    # draws) or "popularity" (training frequency, logQ-corrected); uniform learnt more on
    # ML-1M (docs/scaling.md)
    sampler: str = "uniform"
    # bfloat16 autocast of the forward pass and of the loss's item-table products (the
    # ranking's item scores stay float32); null = auto: on where the hardware runs bf16
    # natively (CPU avx512_bf16 / amx_bf16, a GPU with bf16), decided at run time and
    # written into the run's config.yaml. Auto by default: bf16 trains an epoch 1.5-2x
    # faster and matches float32 on ML-1M (four seeds each, test NDCG@10 1.011x with the
    # history kept, p = 0.14 user by user) and Amazon Beauty (two seeds, 1.001x, p = 0.8);
    # docs/training.md "bfloat16"
    bf16: bool | None = None
    # CPU: run the Mamba selective scan compiled, through the C kernels below or as
    # torch.compile-fused chunks (hymoerec.models.scan); compilation is paid once (both
    # cache their kernels on disk), and a machine without a C compiler falls back to the
    # per-step scan with a warning
    compile_scan: bool = False
    # CPU: the C kernels of hymoerec/kernels, built with the system compiler on first use
    # (about a second each), each falling back with a warning where none works: the Mamba
    # mixer's scan with its step sizes, skip and gate for training and the scan for
    # ranking (with compile_scan), the mixer's convolution and SiLU, the FFN's GELU and
    # dropout, and the chunked loss's softmax (docs/training.md "Speed"); false: none
    native_kernels: bool = True
    max_minutes: float = 0.0  # wall-clock budget for training; 0 = none
    threads: int = 0  # torch CPU threads; 0 = automatic (see hymoerec.runtime)
    # also rank validation with each user's history excluded, every epoch (metrics.jsonl
    # "valid_history_excluded"); model selection stays on the paper's ranking ("valid")
    valid_history_excluded: bool = False
    # after training, fit a penalty on items already in the user's history by maximum
    # likelihood on the validation targets, and rank with it (hymoerec.evaluation.seen)
    seen_penalty: bool = False

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "eval_batch_size", "patience", "negatives")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must be at least 1")
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr}: must be positive")
        non_negative = ("weight_decay", "warmup_steps", "bucket", "max_len", "max_minutes")
        for name in (*non_negative, "window_stride", "threads", "eval_item_chunk"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must not be negative")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"train.schedule={self.schedule!r}: expected constant or cosine")
        if self.loss not in LOSS_NAMES:
            raise ConfigError(f"train.loss={self.loss!r}: expected one of {', '.join(LOSS_NAMES)}")
        if self.sampler not in ("popularity", "uniform"):
            raise ConfigError(f"train.sampler={self.sampler!r}: expected popularity or uniform")
        if not 0 <= self.gbce_t <= 1:
            raise ConfigError(f"train.gbce_t={self.gbce_t}: must be in [0, 1]")
        try:
            check_device_name(self.device)
        except DeviceError as error:
            raise ConfigError(f"train.{error}") from None


@dataclass(frozen=True)
class RunConfig:
    model: str  # hymoerec, mamba4rec, sasrec, bert4rec, gru4rec or narm
    dataset: str  # ml-1m, ml-100k, amazon-beauty, or a file path
    model_options: dict[str, Any] = field(default_factory=dict)  # the model's own config
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict copy."""
    result = yaml.safe_load(yaml.safe_dump(values)) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.002")
        *parents, leaf = key.split(".")
        node = result
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {parent} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return result


def load_run_config(
    path: str | Path | None, overrides: list[str], base: dict[str, Any] | None = None
) -> RunConfig:
    """The config file, then ``base`` (explicit command-line options such as --dataset,
    merged section by section), then the ``key=value`` overrides: later ones win."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"config file {path}: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        values.update(loaded)
    for key, value in (base or {}).items():
        section = values.get(key)
        if isinstance(value, dict) and isinstance(section, dict):
            values[key] = {**section, **value}
        else:
            values[key] = value
    values = apply_overrides(values, overrides)
    for required in ("model", "dataset"):
        if required not in values:
            raise ConfigError(f"missing option {required!r} (--{required} or in the config)")
    return from_dict(RunConfig, values)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)

import re
from pathlib import Path

import pytest

from hymoerec.config import RunConfig, TrainConfig, load_run_config
from hymoerec.models import build_model, make_config
from hymoerec.models.moe import MoEConfig
from hymoerec.schema import ConfigError, from_dict


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: sasrec\ndataset: ml-100k\ntrain:\n  lr: 0.002\n  epochs: 3\n")
    config = load_run_config(path, ["train.batch_size=64", "model_options.hidden=32"])
    assert config.train == TrainConfig(lr=0.002, epochs=3, batch_size=64)
    assert config.model_options == {"hidden": 32}
    assert config.train.lr == 0.002 and isinstance(config.train.lr, float)


def test_command_line_options_override_the_file_and_settings_override_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: hymoerec\ndataset: ml-1m\ndata:\n  item_core: 3\n")
    base = {"dataset": "ml-100k", "data": {"data_dir": "/data"}}
    config = load_run_config(path, ["data.data_dir=/other"], base)
    assert (config.model, config.dataset) == ("hymoerec", "ml-100k")
    assert config.data.item_core == 3  # the file's section is merged, not replaced
    assert config.data.data_dir == "/other"


def test_unknown_keys_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        from_dict(RunConfig, {"model": "x", "dataset": "y", "train": {"learning_rate": 1}})
    with pytest.raises(ConfigError, match="unknown option optimiser"):
        from_dict(RunConfig, {"model": "x", "dataset": "y", "optimiser": "sgd"})


def test_bad_values_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr=-1\.0"):
        load_run_config(None, ["model=x", "dataset=y", "train.lr=-1"])
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int"):
        load_run_config(None, ["model=x", "dataset=y", "train.epochs=many"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_run_config(None, ["model=x", "dataset=y", "train.lr"])
    with pytest.raises(ConfigError, match="missing option 'dataset'"):
        load_run_config(None, ["model=x"])


def known(cls: type) -> str:
    """How an unknown-option message lists the options of ``cls``."""
    return ", ".join(sorted(cls.__dataclass_fields__))


# Run configs and model configs load through the one loader, hymoerec.schema.from_dict: the
# same errors, with every option named by its dotted path in a run config.
UNKNOWN = [
    (
        lambda: load_run_config(None, ["model=x", "dataset=y", "train.learning_rate=1"]),
        f"unknown option train.learning_rate; known: {known(TrainConfig)}",
    ),
    (
        lambda: make_config("hymoerec", {"moe": {"num_expert": 4}}),
        f"unknown option model_options.moe.num_expert; known: {known(MoEConfig)}",
    ),
    (
        lambda: from_dict(RunConfig, {"model": "x", "dataset": "y", "optimiser": "sgd"}),
        f"unknown option optimiser; known: {known(RunConfig)}",
    ),
]
WRONG_TYPE = [
    (
        lambda: load_run_config(None, ["model=x", "dataset=y", "train.epochs=many"]),
        "train.epochs: expected int, got 'many'",
    ),
    (
        lambda: make_config("sasrec", {"num_layers": "two"}),
        "model_options.num_layers: expected int, got 'two'",
    ),
    (
        lambda: make_config("hymoerec", {"moe": {"fusion": 1}}),
        "model_options.moe.fusion: expected str, got 1",
    ),
    (
        lambda: load_run_config(None, ["model=x", "dataset=y", "data.user_core=true"]),
        "data.user_core: expected int, got True",
    ),
    (lambda: make_config("narm", {"dropout": 0.3}), "model_options.dropout: expected a list"),
    (lambda: make_config("sasrec", {"moe": 4}), "model_options.moe: expected a mapping, got 4"),
]


@pytest.mark.parametrize(
    ("load", "message"),
    UNKNOWN + WRONG_TYPE,
    ids=[f"unknown-{i}" for i in range(len(UNKNOWN))]
    + [f"type-{i}" for i in range(len(WRONG_TYPE))],
)
def test_run_and_model_configs_fail_alike_naming_the_dotted_path(load, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load()


def test_model_options_of_a_run_config_are_named_by_their_path_in_it() -> None:
    config = load_run_config(None, ["model=hymoerec", "dataset=y", "model_options.moe.topk=1"])
    with pytest.raises(ConfigError, match=r"^unknown option model_options\.moe\.topk; known: "):
        build_model(config.model, config.model_options, 10)


def test_the_loader_widens_and_converts_as_yaml_needs() -> None:
    assert make_config("narm", {"dropout": [0.1, 0.2]}).dropout == (0.1, 0.2)  # YAML's list
    assert make_config("sasrec", {"dropout": 0}).dropout == 0.0
    assert isinstance(make_config("sasrec", {"dropout": 0}).dropout, float)
    assert load_run_config(None, ["model=x", "dataset=y", "train.lr=1"]).train.lr == 1.0
    moe = MoEConfig(top_k=1)
    assert make_config("sasrec", {"ffn": "hymoe", "moe": moe}).moe is moe


def test_missing_required_options_are_named() -> None:
    with pytest.raises(ConfigError, match=r"^missing option dataset$"):
        from_dict(RunConfig, {"model": "x"})

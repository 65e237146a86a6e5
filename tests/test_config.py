from pathlib import Path

import pytest

from hymoerec.config import ConfigError, RunConfig, TrainConfig, from_dict, load_run_config


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

from __future__ import annotations

import argparse

import pytest

from muselens.training.train_config import (ConfigError, TrainConfig, config_from_dict, config_overrides, load_config,
                                            parse_setting, setting_argument)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "museum.yaml"
    path.write_text("backbone: mobilenet_v2\nstage1:\n  epochs: 7\n  optim:\n    lr: 0.05\n")
    config = load_config(path, {"stage1": {"epochs": 2}, "seed": 3})
    assert config.backbone == "mobilenet_v2"
    assert config.stage1.epochs == 2 and config.stage1.optim.lr == 0.05
    assert config.stage1.seed == config.stage2.seed == config.stage3.seed == 3


def test_round_trip_through_plain_data():
    config = load_config(None, {"stages": [3, 1], "stage2": {"short_sides": [320, 160]}})
    assert config.stages == (1, 3)
    assert config_from_dict(config.to_dict()) == config


def test_train_blocks_is_one_number_for_all_stages():
    config = TrainConfig(train_blocks=2)
    assert config.stage1.train_blocks == config.stage2.train_blocks == 2


@pytest.mark.parametrize("overrides, message", [
    ({"stage1": {"epoch": 2}}, "unknown key"),
    ({"stages": [4]}, "subset of"),
    ({"backbone": "resnet50"}, "not one of"),
    ({"stage3": {"loss": "nope"}}, "unknown loss"),
    ({"stage1": 5}, "must be a mapping"),
])
def test_bad_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_unreadable_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stage1: [unclosed")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_set_flag_parses_yaml_values():
    assert parse_setting("stage2.short_sides=[320, 160]") == (["stage2", "short_sides"], [320, 160])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_setting("stage1.epochs")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        setting_argument("stage1.epochs")
    assert config_overrides([parse_setting("stage1.epochs=5")], backbone="mobilenet_v2", stages="1,2", seed=4) == {
        "stage1": {"epochs": 5}, "backbone": "mobilenet_v2", "stages": [1, 2], "seed": 4}


def _flags(*argv: str) -> argparse.Namespace:
    from muselens.training.train_config import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(list(argv))


def test_a_run_gets_the_papers_epochs_at_the_size_its_device_trains_in_time(tmp_path):
    from muselens.training.train_config import config_from_args

    cpu = config_from_args(_flags())
    assert (cpu.stage1.epochs, cpu.stage2.epochs, cpu.stage3.epochs) == (30, 10, 6)  # paper 004's schedule
    assert cpu.stage3.short_side == cpu.eval_short_side == 320 and cpu.extra == {"schedule": "cpu"}
    assert cpu.view_pool.stage1_views > 0 and cpu.view_pool.stage2_views > 0
    cuda = config_from_args(_flags("--device", "cuda"))
    assert cuda.stage3.short_side == 448 and cuda.extra == {"schedule": "full"}
    # the schedule lies under the museum's file, which lies under --set
    path = tmp_path / "museum.yaml"
    path.write_text("stage3:\n  epochs: 2\n  short_side: 256\n")
    mixed = config_from_args(_flags("--schedule", "short", "--config", str(path), "--set", "stage3.epochs=3"))
    assert (mixed.stage1.epochs, mixed.stage3.epochs, mixed.stage3.short_side) == (5, 3, 256)
    assert mixed.extra == {"schedule": "short"}
    with pytest.raises(SystemExit):
        _flags("--schedule", "fortnight")

"""The typed config: valid configs load, and each class of invalid config names its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plot_ray.config import ConfigError, PlotRayConfig, load_config, parse_override

CONFIGS = sorted(Path(__file__).parents[1].joinpath("jobs", "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_are_valid(path):
    cfg = load_config(path)
    assert isinstance(cfg, PlotRayConfig)
    assert cfg.model.trust_remote_code is False


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    cfg = load_config()
    again = tmp_path / "c.yaml"
    again.write_text(cfg.to_yaml())
    assert load_config(again) == cfg


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        CONFIGS[0],
        [
            "loss.alpha=0.25",
            "deepspeed.zero_stage=3",
            "loss.plot.projection=sliced",
            "tune.seeds=[0, 1]",
            "data.sources.1.subpreference=math",
        ],
    )
    assert cfg.loss.alpha == 0.25 and cfg.deepspeed.zero_stage == 3
    assert cfg.loss.plot.projection == "sliced"
    assert cfg.tune.seeds == [0, 1]
    assert cfg.data.sources[1].subpreference == "math"


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("loss.alpha=-0.1", "loss.alpha", "greater than or equal to 0"),
        ("train.num_workers=0", "train.num_workers", "greater than or equal to 1"),
        ("deepspeed.zero_stage=5", "deepspeed.zero_stage", "0, 1, 2 or 3"),
        ("loss.method=ppo", "loss.method", "'sft', 'dpo'"),
        ("loss.plot.transform=sigmoid", "loss.plot.transform", "'shift', 'relu' or 'softmax'"),
        ("train.learning_rate=fast", "train.learning_rate", "valid number"),
        ("loss.beta=0", "loss.beta", "greater than 0"),
        ("tune.seeds=[0, x]", "tune.seeds.1", "valid integer"),
        ("data.max_prompt_length=600", "data.max_prompt_length", "data.max_length"),
    ],
)
def test_invalid_values_name_the_key_and_what_is_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert key in str(err.value)
    assert allowed in str(err.value)


@pytest.mark.parametrize("override", ["loss.alhpa=1", "trian.max_steps=3", "loss.plot.targt=x"])
def test_unknown_keys_are_rejected_with_allowed_keys(override):
    with pytest.raises(ConfigError, match=r"unknown key; allowed: .*"):
        load_config(overrides=[override])


def test_unknown_key_in_yaml_names_the_dotted_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  plot:\n    colour: red\n")
    with pytest.raises(ConfigError, match=r"loss\.plot\.colour: unknown key; allowed: .*aggregate"):
        load_config(path)


def test_cross_field_rules():
    with pytest.raises(
        ConfigError, match="deepspeed.offload_param=cpu needs deepspeed.zero_stage=3"
    ):
        load_config(overrides=["deepspeed.offload_param=cpu", "deepspeed.zero_stage=2"])
    with pytest.raises(ConfigError, match="anchored needs the reference model's logits"):
        load_config(overrides=["loss.reference=precomputed", "loss.alpha=1"])
    # ...which is fine with the global target, or when PLOT is off.
    load_config(overrides=["loss.reference=precomputed", "loss.alpha=1", "loss.plot.target=global"])
    load_config(overrides=["loss.reference=precomputed", "loss.alpha=0"])
    # a transform under the anchored target would change nothing (measured: bit-identical runs)
    with pytest.raises(ConfigError, match="transform=relu shapes only the global target"):
        load_config(overrides=["loss.plot.transform=relu"])
    load_config(overrides=["loss.plot.transform=relu", "loss.plot.target=global"])
    # the zero-tilt control is a control of the anchored target only
    with pytest.raises(ConfigError, match="tilt=zero is a control of the anchored target"):
        load_config(overrides=["loss.plot.tilt=zero", "loss.plot.target=global"])
    assert load_config(overrides=["loss.plot.tilt=zero"]).loss.plot.tilt == "zero"


def test_storage_path_must_be_a_filesystem_path():
    # checkpoints and trial results are read back as files: a URI would be mangled into a
    # local path ("s3:/bucket") far from where the mistake was made
    with pytest.raises(ConfigError, match=r"cluster\.storage_path='s3://b/r'.*every node mounts"):
        load_config(overrides=["cluster.storage_path=s3://b/r"])
    assert load_config(overrides=["cluster.storage_path=/mnt/shared/r"]).cluster.storage_path


@pytest.mark.parametrize("text", ["loss.alpha", "=3", ""])
def test_malformed_overrides(text):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override(text)


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_cli_config_prints_resolved_config_and_fails_naming_the_key():
    ok = subprocess.run(
        [sys.executable, "-m", "plot_ray.cli", "config", str(CONFIGS[0]), "loss.alpha=0.75"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "alpha: 0.75" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "plot_ray.cli", "config", "deepspeed.zero_stage=5"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "deepspeed.zero_stage" in bad.stderr and "0, 1, 2 or 3" in bad.stderr


def test_every_subcommand_has_help():
    from plot_ray.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no API
    for name in commands:
        out = subprocess.run(
            [sys.executable, "-m", "plot_ray.cli", name, "--help"], capture_output=True, text=True
        )
        assert out.returncode == 0 and "usage: plot-ray" in out.stdout, name


@pytest.mark.parametrize(
    "override, message",
    [
        ("loss.plot.projection=umap", "'pca', 'sliced' or 'exact'"),
        ("loss.plot.normalize=max", "'reference', 'unit_variance' or 'none'"),
        ("loss.simpo_beta=0", "loss.simpo_beta"),
    ],
)
def test_loss_keys_name_the_key_and_the_allowed_values(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert message in str(err.value)


def test_ipo_rejects_label_smoothing_by_key():
    with pytest.raises(
        ConfigError, match="loss.label_smoothing=0.1 does not apply to loss.method=ipo"
    ):
        load_config(overrides=["loss.method=ipo", "loss.label_smoothing=0.1"])


def test_length_normalised_methods_have_their_own_documented_defaults():
    loss = load_config(overrides=["loss.method=simpo"]).loss
    assert (loss.beta, loss.simpo_beta, loss.simpo_gamma) == (0.1, 2.0, 1.0)
    assert loss.ipo_normalize is True
    assert (loss.pro_sft_weight, loss.pro_sft_reduction, loss.sft_weight) == (0.05, "sum", 0.0)
    assert loss.plot.normalize == "reference"


def test_importing_the_config_does_not_import_torch():
    code = "import sys, plot_ray.config; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_unknown_key_inside_a_list_item_lists_the_item_keys():
    with pytest.raises(
        ConfigError, match=r"data\.sources\.0\.colour: unknown key; allowed: .*path"
    ):
        load_config(overrides={"data.sources": [{"path": "x.jsonl"}], "data.sources.0.colour": 1})


def test_an_override_below_a_value_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"loss\.alpha\.x: loss\.alpha is a value, not a section"):
        load_config(overrides=["loss.alpha=1", "loss.alpha.x=2"])

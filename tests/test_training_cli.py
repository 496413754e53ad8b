"""training.cli: options map onto TrainConfig fields, errors are clear, --help stays TensorFlow-free."""

import subprocess
import sys

import pytest

from app.cli import build_parser, main


def _config(*argv):
    from training.cli import build_config

    args = build_parser().parse_args(["train", *argv])
    return build_config(args)


def test_shortcuts_and_set_reach_the_config(tmp_path):
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("optim:\n  epochs: 7\n  label_smoothing: 0.0\nmodel:\n  se_ratio: 8\n")
    cfg = _config(
        "data",
        "--out",
        "r",
        "--config",
        str(yaml_file),
        "--input-size",
        "96x80",
        "--weights",
        "none",
        "--backbone",
        "large",
        "--epochs",
        "9",
        "--no-flip",
        "--no-color",
        "--blur",
        "0.3",
        "--imbalance",
        "oversample",
        "--set",
        "imbalance.good_fraction=0.5",
        "--mixed-precision",
        "--strategy",
        "mirrored",
        "--good-class",
        "free",
    )
    assert cfg.data.root == "data" and cfg.data.good_class == "free"
    assert cfg.model.input_size == (96, 80) and cfg.model.backbone.value == "large" and cfg.model.se_ratio == 8
    assert cfg.optim.epochs == 9 and cfg.optim.label_smoothing == 0.0  # flag beats YAML, YAML beats default
    assert not cfg.augment.hflip and not cfg.augment.vflip and cfg.augment.brightness == 0 and cfg.augment.contrast == 0
    assert cfg.augment.enabled and cfg.augment.blur_probability == 0.3
    assert cfg.imbalance.method.value == "oversample" and cfg.imbalance.good_fraction == 0.5
    assert cfg.runtime.mixed_precision.value == "float16" and cfg.runtime.strategy.value == "mirrored"
    assert not cfg.resolved  # grayscale is auto until the trainer has looked at the images
    cfg.data.grayscale = False
    assert cfg.preprocess_spec().width == 96 and cfg.preprocess_spec().height == 80


def test_unknown_key_and_bad_values_are_named():
    from inspector.config import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'optim.lerning_rate'"):
        _config("data", "--out", "r", "--set", "optim.lerning_rate=0.1")
    with pytest.raises(ConfigError, match="ImageNet weights exist for alpha"):
        _config("data", "--out", "r", "--alpha", "0.5")
    with pytest.raises(ValueError, match="DATA_ROOT"):
        _config("--out", "r")


def test_missing_weights_file_exit_code_and_message(synth_root, tmp_path, capsys):
    code = main(
        [
            "train",
            str(synth_root),
            "--out",
            str(tmp_path / "run"),
            "--input-size",
            "64",
            "--weights",
            str(tmp_path / "absent.weights.h5"),
            "--set",
            "model.minimalistic=true",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "absent.weights.h5 not found" in err and "--weights none" in err


def test_resume_refuses_changed_options(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path), "--resume", "--epochs", "3"])
    assert code == 1 and "drop --epochs" in capsys.readouterr().err


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from app.cli import build_parser; build_parser().parse_args(['train', 'x', '--out', 'y']);"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "app.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "inspector train" in out.stdout and "--resume" in out.stdout


def test_epochs_with_pretrained_weights_sets_the_finetune_stage_and_says_so(capsys):
    cfg = _config("data", "--out", "r", "--weights", "imagenet", "--epochs", "12")
    assert cfg.finetune.epochs == 12
    assert "12 fine-tune epochs" in capsys.readouterr().err
    cfg = _config("data", "--out", "r", "--weights", "imagenet", "--epochs", "12", "--finetune-epochs", "7")
    assert cfg.finetune.epochs == 7  # the explicit stage flag wins
    capsys.readouterr()
    cfg = _config("data", "--out", "r", "--weights", "none", "--epochs", "12", "--input-size", "auto")
    assert cfg.optim.epochs == 12 and cfg.model.input_size == "auto" and capsys.readouterr().err == ""

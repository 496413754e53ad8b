"""The one small trained run shared by training, calibration and edge tests (built once per session).

``trained_run`` is a real RUN_DIR written by :func:`training.trainer.train` on the synthetic dataset:
MobileNetV3Small (alpha 0.75, minimalistic) at 64x64, random init, 2 epochs of 3 steps, eager steps
(graph tracing would cost more than the training itself). Its accuracy is near chance - it exists to
exercise the formats and the code paths, not to be good.
"""

from pathlib import Path

import pytest


def small_config(root, **sections):
    """A fast TrainConfig for tests (64x64, tiny backbone, random init, few eager steps).

    Keyword arguments update config sections, e.g. ``small_config(root, model={"weights": path})``.
    """
    from training.config import TrainConfig

    data = {
        "name": "synth-test",
        "seed": 0,
        "data": {"root": str(root), "good_class": "good", "cache": False},
        "model": {"input_size": [64, 64], "weights": "none", "alpha": 0.75, "minimalistic": True},
        "optim": {"epochs": 2, "batch_size": 16, "steps_per_epoch": 3, "warmup_epochs": 0.5},
        "runtime": {"progress": "lines", "run_eagerly": True},
        "report": {"max_misclassified": 8},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return TrainConfig.model_validate(data)


@pytest.fixture(scope="session")
def trained_run(synth_root, tmp_path_factory) -> Path:
    """Path of a complete RUN_DIR (model.keras, run.json, split.json, metrics.json, report...)."""
    from training.trainer import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train(small_config(synth_root), run_dir)
    return run_dir

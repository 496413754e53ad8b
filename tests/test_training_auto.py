"""training.auto: input size from the images' native size within the time budget, grayscale when gray."""

import numpy as np

from inspector.dataset import Sample, SplitManifest
from inspector.imageio import save_image
from inspector.preprocess import Roi
from training.auto import MAX_EPOCHS, MAX_SIZE, MIN_EPOCHS, MIN_SIZE, choose_epochs, choose_input_size, survey


def _square(side, n=5):
    return [(side, side)] * n


def test_native_size_in_steps_of_32_within_bounds_and_the_time_budget():
    assert choose_input_size(_square(300)) == (192, 192)  # a 300 px part is not shrunk to 128 px
    assert choose_input_size([(170, 170), (180, 180), (175, 175)]) == (160, 160)
    assert choose_input_size(_square(64)) == (MIN_SIZE, MIN_SIZE)
    assert choose_input_size(_square(2000)) == (MAX_SIZE, MAX_SIZE)
    assert choose_input_size(_square(300), train_images=940, epochs=90) == (160, 160)  # magnetic tile's recipe
    assert choose_input_size(_square(300), train_images=300, epochs=90) == (192, 192)  # a small set affords more
    assert choose_input_size(_square(300), train_images=20000, epochs=90) == (MIN_SIZE, MIN_SIZE)


def test_elongated_images_keep_their_shape_within_the_same_pixel_budget():
    strips = [(1240, 500), (1250, 500), (1230, 510)]
    assert choose_input_size(strips) == (480, 192)
    assert choose_input_size([(h, w) for w, h in strips]) == (192, 480)  # standing strips stand
    assert choose_input_size([(1600, 256)] * 3) == (768, 192)  # squashed to MAX_ASPECT, not beyond
    # The time cap applies to the area: 940 images x 90 epochs afford about 178 px square (160 in steps of
    # 32), about 113 x 281 at this aspect: 96 x 224 in steps of 32.
    width, height = choose_input_size(strips, train_images=940, epochs=90)
    assert (width, height) == (224, 96) and width * height <= 178 * 178
    # 4:3 frames, near-square parts and sets lying both ways (magnetic tile) stay square.
    assert choose_input_size([(640, 480)] * 3) == (192, 192)
    mixed = [(300, 200), (200, 300), (310, 190), (190, 310), (400, 250)]
    assert choose_input_size(mixed, train_images=940, epochs=90) == (160, 160)


def test_epochs_show_about_as_many_images_as_the_measured_schedule_within_bounds():
    assert choose_epochs(940) == 90  # magnetic tile: the measured 90 epochs
    assert choose_epochs(4160) == 21  # the demo's set: about its measured 20 epochs
    assert choose_epochs(100) == MAX_EPOCHS and choose_epochs(0) == MAX_EPOCHS
    assert choose_epochs(7000) == MIN_EPOCHS  # a large set still gets 20 passes
    # Then the input size: a 7,000-image set of 300 px parts affords 128 px in 20 epochs, not 96 px in 90.
    assert choose_input_size(_square(300), train_images=7000, epochs=choose_epochs(7000)) == (128, 128)


def _manifest(tmp_path, colour: bool):
    rng = np.random.default_rng(0)
    samples = []
    for i, (w, h) in enumerate([(320, 240), (300, 260), (400, 250)]):
        gray = rng.integers(0, 255, (h, w, 1), dtype=np.uint8)
        image = np.concatenate([gray, gray, (gray // 2 if colour else gray)], axis=2)
        save_image(tmp_path / f"{i}.png", image)
        samples.append(Sample(f"{i}.png", "good", str(i)))
    return SplitManifest(
        str(tmp_path), "good", ["dent", "good"], 0, (0.7, 0.15, 0.15), "f", {"train": samples, "val": [], "test": []}
    )


def test_survey_reads_short_sides_and_colour(tmp_path):
    gray = survey(_manifest(tmp_path, colour=False))
    assert sorted(gray.short_sides) == [240, 250, 260] and gray.gray
    assert sorted(gray.sizes) == [(300, 260), (320, 240), (400, 250)]
    assert not survey(_manifest(tmp_path, colour=True)).gray
    cropped = survey(_manifest(tmp_path, colour=False), roi=Roi(x=100, y=0, width=150, height=200))
    assert cropped.short_sides == [150, 150, 150]


def test_resolve_auto_sets_epochs_before_the_input_size(tmp_path):
    from training.config import TrainConfig
    from training.outcome import resolve_auto

    said = []
    config = TrainConfig.model_validate({"data": {"root": str(tmp_path)}, "model": {"weights": "none"}})
    resolved = resolve_auto(config, _manifest(tmp_path, colour=False), said.append)
    assert resolved.resolved and resolved.optim.epochs == MAX_EPOCHS  # 3 training images
    assert resolved.model.input_size == (MAX_SIZE, MAX_SIZE) and said[0].startswith("epochs auto: 90 ")
    explicit = config.model_copy(update={"optim": config.optim.model_copy(update={"epochs": 5})})
    said.clear()
    assert resolve_auto(explicit, _manifest(tmp_path, colour=False), said.append).optim.epochs == 5
    assert not any(line.startswith("epochs auto") for line in said)

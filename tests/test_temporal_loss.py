"""The temporal (stability) loss: what it compares, that it is seeded by step, and that training
with it gives a generator whose strokes move with the photo instead of being redrawn."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from styler.config import DiscriminatorConfig, Features, GeneratorConfig, LossConfig, TrainConfig
from styler.inference.temporal import warping_error
from styler.io.weights import read_info
from styler.training.losses import TemporalLoss
from styler.training.trainer import Trainer

CPU = torch.device("cpu")
SMALL = TrainConfig(name="t", steps=12, batch_size=2, image_size=64, style_size=64, features=Features.RANDOM,
                    num_workers=0, val_every=100, checkpoint_every=100, preview_every=0, seed=3,
                    generator=GeneratorConfig(base_channels=4, num_residual=1),
                    discriminator=DiscriminatorConfig(base_channels=8), loss=LossConfig(adv_weight=0.0))


def smooth_batch(n=2, size=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand((n, 3, size // 8, size // 8), generator=gen), size=size, mode="bilinear")


def test_moved_batch_is_the_batch_shifted_by_the_drawn_offset():
    loss = TemporalLoss(max_shift=8, noise=0.0, margin=4, seed=1)
    content = smooth_batch()
    shifts = set()
    for step in range(12):
        moved, (dy, dx) = loss.moved(content, step)
        assert moved.shape == content.shape and 0 <= dy <= 8 and 0 <= dx <= 8
        # moved[y, x] shows content[y + dy, x + dx]
        assert torch.equal(moved[..., :64 - dy, :64 - dx], content[..., dy:, dx:])
        shifts.add((dy, dx))
    assert len(shifts) > 6  # the offsets vary from step to step


def test_draws_depend_on_seed_and_step_only():
    content = smooth_batch()
    a, b = TemporalLoss(8, 0.05, 4, seed=1), TemporalLoss(8, 0.05, 4, seed=1)
    torch.manual_seed(0)
    first = a.moved(content, 5)
    torch.manual_seed(99)  # the global RNG plays no part: a resumed run draws the same
    assert torch.equal(first[0], b.moved(content, 5)[0]) and first[1] == b.moved(content, 5)[1]
    assert not torch.equal(first[0], a.moved(content, 6)[0])
    noisy, shift = a.moved(content, 5)
    clean, _ = TemporalLoss(8, 0.0, 4, seed=1).moved(content, 5)
    assert 0 < (noisy - clean).abs().mean() < 0.05


def test_zero_for_an_equivariant_map_and_positive_for_one_fixed_to_the_frame():
    loss = TemporalLoss(8, 0.0, 4, seed=2)
    content = smooth_batch()
    moved, shift = loss.moved(content, 0)
    if shift == (0, 0):
        moved, shift = loss.moved(content, 1)
    assert shift != (0, 0)
    # A pixel-wise map moves with the photo: nothing to penalise.
    assert loss(content ** 2, moved ** 2, shift) == 0
    # A pattern tied to the frame, not the photo (what a strided network's aliasing adds), is.
    grid = torch.zeros(1, 1, 64, 64)
    grid[..., ::8, ::8] = 1
    assert loss(content + grid, moved + grid, shift) > 0.01


def test_gradients_reach_both_outputs():
    loss = TemporalLoss(8, 0.0, 4, seed=0)
    a = torch.rand(2, 3, 64, 64, requires_grad=True)
    b = torch.rand(2, 3, 64, 64, requires_grad=True)
    loss(a, b, (3, 5)).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def shift_flicker(generator, photo, shift=3):
    """Warping error of the generator's outputs for a photo and the same photo moved ``shift`` px."""
    frames = torch.cat([photo[..., :-8], photo[..., shift:shift + photo.shape[-1] - 8]])
    with torch.no_grad():
        out = generator.eval()(frames)
    return warping_error(out, (0, shift), margin=8)


@pytest.mark.parametrize("weight", [0.0, 30.0])
def test_training_logs_the_term_and_records_its_weight(tmp_path, photo_dir, style_image, weight):
    config = replace(SMALL, steps=2, loss=replace(SMALL.loss, temporal_weight=weight))
    trainer = Trainer(config, style_image, photo_dir, tmp_path / "w", CPU, run_dir=tmp_path / "run")
    result = trainer.run()
    assert ("temporal" in result.losses) == (weight > 0)
    assert read_info(result.weights_path).metadata["loss_weights"]["temporal_weight"] == weight


def test_training_with_it_steadies_the_generator_under_sub_stride_shifts(tmp_path, photo_dir, style_image):
    photo = smooth_batch(1, 96, seed=7)
    flicker = {}
    for weight in (0.0, 50.0):
        config = replace(SMALL, loss=replace(SMALL.loss, temporal_weight=weight))
        torch.manual_seed(0)
        trainer = Trainer(config, style_image, photo_dir, tmp_path / f"w{weight}", CPU,
                          run_dir=tmp_path / f"run{weight}")
        trainer.run()
        flicker[weight] = shift_flicker(trainer.generator, photo)
    assert flicker[50.0] < 0.7 * flicker[0.0], flicker  # 0.55x here after 12 steps


def test_validation_ranks_checkpoints_with_the_temporal_term(tmp_path, photo_dir, style_image):
    values = {}
    for weight in (0.0, 10.0):
        config = replace(SMALL, loss=replace(SMALL.loss, temporal_weight=weight))
        trainer = Trainer(config, style_image, photo_dir, tmp_path / f"w{weight}", CPU, run_dir=tmp_path / f"r{weight}")
        values[weight] = (trainer.validate(), trainer.validate())
    assert values[10.0][0] == values[10.0][1]  # the same draws at every evaluation
    assert values[10.0][0] > values[0.0][0] + 0.01  # same generator (same seed), plus 10 x the temporal term

import pytest
import torch

from styler.config import Features, LossConfig, StyleLoss
from styler.features import build_feature_extractor
from styler.losses import ContentLoss, GramLoss, HingeGANLoss, PerceptualLoss, SlicedWassersteinLoss, \
    TotalVariationLoss, gram_matrix

LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def tiny_extractor():
    return build_feature_extractor(Features.RANDOM, LAYERS, width_divisor=8, seed=0)


def test_gram_is_independent_of_image_size():
    feats = torch.rand(1, 8, 10, 12)
    tiled = feats.repeat(1, 1, 3, 2)  # same statistics, 6x the positions
    assert torch.allclose(gram_matrix(feats), gram_matrix(tiled), atol=1e-6)


def test_gram_loss_zero_on_target_and_positive_elsewhere():
    feats = {"a": torch.rand(1, 4, 8, 8)}
    loss = GramLoss(feats)
    assert loss(feats).item() < 1e-10
    assert loss({"a": torch.rand(1, 4, 8, 8) * 3}).item() > 0.1


def test_sliced_wasserstein_zero_on_same_distribution_any_size():
    feats = torch.rand(1, 4, 8, 8)
    loss = SlicedWassersteinLoss({"a": feats}, projections=16)
    assert loss({"a": feats}).item() < 1e-10
    # Same distribution with 4x the samples: only quantile interpolation error remains.
    same = loss({"a": feats.repeat(1, 1, 2, 2)}).item()
    shifted = loss({"a": feats + 1.0}).item()
    assert shifted > 0.1 and same < 0.02 * shifted


def test_content_loss_relative_scale():
    target = torch.rand(2, 4, 8, 8)
    assert ContentLoss()(target, target).item() == 0
    assert torch.isclose(ContentLoss()(target * 10 + 1, target * 10), ContentLoss()(target + 0.1, target))


def test_tv_loss_zero_for_constant_image():
    assert TotalVariationLoss()(torch.full((1, 3, 8, 8), 0.3)).item() == 0
    assert TotalVariationLoss()(torch.rand(1, 3, 8, 8)).item() > 0


def test_hinge_loss_signs():
    gan = HingeGANLoss()
    good = gan.discriminator(torch.full((1, 1, 4, 4), 2.0), torch.full((1, 1, 4, 4), -2.0))
    bad = gan.discriminator(torch.full((1, 1, 4, 4), -2.0), torch.full((1, 1, 4, 4), 2.0))
    assert good.item() == 0 and bad.item() > 0
    assert gan.generator(torch.ones(1, 1, 2, 2)).item() < gan.generator(-torch.ones(1, 1, 2, 2)).item()


def test_perceptual_loss_gradients_reach_output_not_extractor():
    ext = tiny_extractor()
    style = torch.rand(1, 3, 48, 48)
    for kind in StyleLoss:
        loss = PerceptualLoss(ext, "relu2_1", LAYERS, style, LossConfig(style_loss=kind))
        out = torch.rand(2, 3, 32, 32, requires_grad=True)
        terms = loss(out, torch.rand(2, 3, 32, 32))
        assert set(terms) == {"content", "style", "tv", "total"}
        assert all(torch.isfinite(v) for v in terms.values())
        terms["total"].backward()
        assert out.grad is not None and out.grad.abs().sum() > 0
        assert all(p.grad is None for p in ext.parameters())


def test_sliced_wasserstein_bank_matches_direct_projection():
    torch.manual_seed(0)
    feats = torch.rand(1, 6, 8, 8)
    loss = SlicedWassersteinLoss({"a": feats}, projections=8, bank_size=32)
    direct = torch.sort(loss.dirs_a.T @ feats.flatten(2)[0], dim=-1).values
    assert torch.allclose(loss.sorted_a, direct)
    # Large style images keep only evenly spaced quantiles; the same distribution still scores ~0.
    big = torch.rand(1, 6, 80, 80)
    coarse = SlicedWassersteinLoss({"a": big}, projections=8, bank_size=32, quantiles=256)
    assert coarse.sorted_a.shape == (32, 256)
    assert coarse({"a": big}).item() < 1e-3 * coarse({"a": big + 0.5}).item()


def test_sliced_wasserstein_draws_are_seeded():
    feats = {"a": torch.rand(1, 6, 8, 8)}
    out = {"a": torch.rand(2, 6, 8, 8)}
    a, b = SlicedWassersteinLoss(feats, projections=4, seed=3), SlicedWassersteinLoss(feats, projections=4, seed=3)
    first = [a(out).item() for _ in range(3)]
    assert first == [b(out).item() for _ in range(3)]
    assert len(set(first)) == 3  # a fresh draw from the bank on every call


def test_sliced_wasserstein_rejects_more_projections_than_bank():
    with pytest.raises(ValueError, match="projections"):
        SlicedWassersteinLoss({"a": torch.rand(1, 4, 8, 8)}, projections=65, bank_size=64)

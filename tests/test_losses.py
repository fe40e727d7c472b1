import itertools
import statistics

import pytest
import torch

from styler.config import Features, LossConfig, StyleLoss
from styler.nn.vgg import build_feature_extractor
from styler.training.losses import ContentLoss, GramLoss, PerceptualLoss, SlicedWassersteinLoss, \
    TotalVariationLoss, gram_matrix, hinge_discriminator_loss, hinge_generator_loss

LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def tiny_extractor():
    return build_feature_extractor(Features.RANDOM, LAYERS, width_divisor=8, seed=0)


def test_gram_is_independent_of_image_size():
    feats = torch.rand(1, 8, 10, 12)
    tiled = feats.repeat(1, 1, 3, 2)  # same statistics, 6x the positions
    assert torch.allclose(gram_matrix(feats), gram_matrix(tiled), atol=1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_gradient_matches_autograds_in_either_layout(layout):
    """The hand-written backward, (dG + dG^T) F, against autograd's derivative of F F^T, and the
    gradient comes back in the features' layout (the loss network's backward reads it in place)."""
    torch.manual_seed(0)
    feats = torch.rand(2, 3, 4, 5).contiguous(memory_format=layout).requires_grad_()
    upstream = torch.rand(2, 3, 3)
    (gram_matrix(feats) * upstream).sum().backward()
    plain = feats.detach().clone().requires_grad_()
    flat = plain.flatten(2)
    (flat @ flat.transpose(1, 2) / 60 * upstream).sum().backward()
    torch.testing.assert_close(feats.grad, plain.grad, rtol=1e-6, atol=1e-7)
    assert feats.grad.is_contiguous(memory_format=layout)


def test_gram_backward_is_one_product():
    """Autograd's backward of F F^T takes two products (one per operand) and adds them; the
    Gram's own takes one, as many FLOPs as its forward."""
    from torch.utils.flop_counter import FlopCounterMode

    feats = torch.rand(2, 8, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    with FlopCounterMode(display=False) as forward:
        gram = gram_matrix(feats)
    with FlopCounterMode(display=False) as backward:
        gram.pow(2).sum().backward()
    assert backward.get_total_flops() == forward.get_total_flops() > 0


def test_gram_of_bf16_features_is_fp32_with_a_bf16_gradient():
    feats = torch.rand(1, 4, 6, 6, dtype=torch.bfloat16, requires_grad=True)
    gram = gram_matrix(feats)
    assert gram.dtype == torch.float32
    gram.sum().backward()
    assert feats.grad.dtype == torch.bfloat16
    expected = 2 * feats.detach().float().flatten(2).sum(1, keepdim=True).expand(1, 4, 36) / (4 * 36)
    torch.testing.assert_close(feats.grad.float().flatten(2), expected, rtol=1e-2, atol=1e-3)


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
    good = hinge_discriminator_loss(torch.full((1, 1, 4, 4), 2.0), torch.full((1, 1, 4, 4), -2.0))
    bad = hinge_discriminator_loss(torch.full((1, 1, 4, 4), -2.0), torch.full((1, 1, 4, 4), 2.0))
    assert good.item() == 0 and bad.item() == 6.0  # relu(1 + 2) on each side
    assert hinge_generator_loss(torch.ones(1, 1, 2, 2)).item() == -1.0


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


def brute_force_w2(a: list[float], b: list[float]) -> float:
    """Squared 1-D Wasserstein-2 distance of two equal-size samples: the cheapest of all pairings."""
    return min(sum((x - b[j]) ** 2 for x, j in zip(a, perm)) for perm in itertools.permutations(range(len(b)))) / len(a)


def test_sliced_wasserstein_is_the_optimal_transport_cost_averaged_over_directions():
    torch.manual_seed(0)
    style, out = torch.rand(1, 3, 2, 3), torch.rand(1, 3, 2, 3)  # 6 positions: 720 pairings
    loss = SlicedWassersteinLoss({"a": style}, projections=4, bank_size=4)  # every direction, every call
    dirs = loss.layers["a"].dirs.double().T.tolist()
    s_cols, o_cols = style.double().flatten(2)[0].T.tolist(), out.double().flatten(2)[0].T.tolist()

    def project(cols, d):
        return [sum(c * w for c, w in zip(col, d)) for col in cols]

    transport = statistics.mean(brute_force_w2(project(o_cols, d), project(s_cols, d)) for d in dirs)
    scale = statistics.mean(statistics.variance(channel) for channel in style.double().flatten(2)[0].tolist())
    assert loss({"a": out}).item() == pytest.approx(transport / scale, rel=1e-4)


def test_sliced_wasserstein_keeps_quantiles_of_large_style_images():
    big = torch.rand(1, 6, 80, 80)
    coarse = SlicedWassersteinLoss({"a": big}, projections=8, bank_size=32, quantiles=256)
    assert coarse.layers["a"].sorted.shape == (32, 256)
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


def test_statistics_stay_fp32_under_bf16_autocast():
    """Under autocast a matmul of .float() inputs still runs in bf16 (relative error ~4e-3): the
    Gram matrices and sliced projections are computed with autocast off."""
    torch.manual_seed(3)
    feats = torch.rand(2, 16, 12, 12)
    style = {"a": torch.rand(1, 16, 12, 12)}
    gram, sliced = GramLoss(style), SlicedWassersteinLoss(style, projections=8, bank_size=16, seed=1)
    exact = gram_matrix(feats), gram({"a": feats}), sliced({"a": feats})
    sliced.rng.manual_seed(2)  # the same draws again
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = gram_matrix(feats), gram({"a": feats}), sliced({"a": feats})
    assert all(value.dtype == torch.float32 for value in under)
    for a, b in zip(exact, under):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=0)


def test_content_targets_stop_at_the_content_layer():
    """The content batch only needs the content layer: the deeper layers run for the output alone."""
    extractor = tiny_extractor()
    loss = PerceptualLoss(extractor, "relu1_1", LAYERS, torch.rand(1, 3, 32, 32), LossConfig())
    deepest = extractor.net[extractor.names.index("relu3_1")]
    calls = []
    deepest.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    loss(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert len(calls) == 1

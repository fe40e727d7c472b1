"""Winograd F(4x4, 3x3) for the loss network: the same convolution as the direct one, forward and
backward, in the places it is used, and out of the way everywhere else."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import styler.nn.winograd as winograd
import styler.training.trainer as trainer_module
from styler.device import cpu_family
from styler.nn.winograd import WinogradConv2d, transform_filters, use_direct, use_winograd, winograd_conv3x3


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(params=["onednn", "bmm"])
def products(request, monkeypatch):
    """Both ways of computing the 36 products: oneDNN's grouped convolution and torch.bmm."""
    if request.param == "onednn" and not winograd.ONEDNN_PRODUCTS:
        pytest.skip("this PyTorch build has no oneDNN")
    monkeypatch.setattr(winograd, "ONEDNN_PRODUCTS", request.param == "onednn")
    return request.param


@pytest.mark.parametrize("shape", [(2, 8, 5, 16, 16), (1, 3, 4, 7, 13), (3, 16, 16, 33, 9), (1, 4, 6, 1, 1)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_the_direct_convolution_at_any_size(shape, with_bias, products):
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(0)
    # VGG with Caffe's preprocessing sees inputs on a 0-255 scale.
    x = torch.randn(n, c, h, w, generator=gen) * 100
    weight = torch.randn(k, c, 3, 3, generator=gen)
    bias = torch.randn(k, generator=gen) if with_bias else None
    y = winograd_conv3x3(x, transform_filters(weight), bias)
    assert y.shape == (n, k, h, w) and y.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(y, F.conv2d(x, weight, bias, padding=1)) < 1e-5


def test_chunks_of_a_large_input_give_the_same_result(monkeypatch, products):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, 24, 20, generator=gen)
    u = transform_filters(torch.randn(8, 8, 3, 3, generator=gen))
    whole = winograd_conv3x3(x, u)
    # About one row of blocks per chunk: every image and band on its own.
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 36 * 5 * 8 * 4)
    assert len(winograd._chunks(3, 6, 36 * 5 * 8 * 4)) == 18
    assert torch.allclose(winograd_conv3x3(x, u), whole, rtol=0, atol=1e-5)


def test_chunks_are_bands_of_equal_height_where_the_rows_allow():
    """16 rows of which 14 fit: two bands of 8, one block count, so one oneDNN packing."""
    bands = [band for _, band in winograd._chunks(2, 16, winograd.CHUNK_BYTES // 14)]
    assert [(b.start, b.stop) for b in bands] == [(0, 8), (8, 16)] * 2


def frozen_conv(c: int, k: int, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(c, k, 3, padding=1).requires_grad_(False)


def test_forward_and_input_gradient_match_the_direct_convolution(products):
    conv = frozen_conv(8, 12)
    net = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(12, 4, 3, padding=1).requires_grad_(False))
    assert use_winograd(net, min_out_channels=1) == 2
    assert all(isinstance(m, WinogradConv2d) for m in (net[0], net[2]))
    x = torch.randn(2, 8, 18, 18, requires_grad=True)
    net(x).square().sum().backward()
    got = x.grad.clone()
    x.grad = None
    h = F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
    F.conv2d(h, net[2].weight, net[2].bias, padding=1).square().sum().backward()
    assert relative_error(got, x.grad) < 1e-5
    assert net[0].weight.grad is None  # frozen filters get no gradient


def test_output_is_no_view_so_an_in_place_relu_may_follow_it(products):
    """autograd refuses to modify a custom Function's view output in place."""
    conv = WinogradConv2d.replacing(frozen_conv(4, 6))
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    y = conv(x)
    assert y._base is None and y.is_contiguous(memory_format=torch.channels_last)
    torch.relu_(y).square().sum().backward()
    got, x.grad = x.grad, None
    F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1)).square().sum().backward()
    assert relative_error(got, x.grad) < 1e-5


@pytest.mark.skipif(not winograd.ONEDNN_PRODUCTS, reason="this PyTorch build has no oneDNN")
def test_onednn_filters_are_packed_once_per_block_count_and_only_the_latest_kept():
    """A packing made for one input size can be slow for another, so each block count gets its
    own; the oldest is dropped so that memory stays at two packings a layer."""
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(6, 4, 3, 3, generator=gen)
    filters = transform_filters(weight)
    sizes = [(8, 8), (16, 16), (8, 8), (12, 8)]  # 4, 16, 4 and 6 blocks an image
    for h, w in sizes:
        x = torch.randn(2, 4, h, w, generator=gen)
        assert relative_error(winograd_conv3x3(x, filters), F.conv2d(x, weight, padding=1)) < 1e-5
    assert list(filters._packed) == [8, 12]  # block counts of the last two sizes, two images each
    packed = filters._packed[12]
    winograd_conv3x3(torch.randn(2, 4, 12, 8), filters)
    assert filters._packed[12] is packed


def test_a_used_layer_can_be_deep_copied_and_pickled(products):
    """oneDNN's packed filters are opaque tensors that cannot be copied: copies rebuild them."""
    conv = WinogradConv2d.replacing(frozen_conv(4, 6))
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    conv(x).sum().backward()
    expected = conv(x)
    for twin in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
        assert torch.equal(twin(x), expected)


def test_filters_built_for_onednn_also_work_without_it(monkeypatch):
    """A layer copied to a process without oneDNN products builds the transformed filters there."""
    if not winograd.ONEDNN_PRODUCTS:
        pytest.skip("this PyTorch build has no oneDNN")
    weight = torch.randn(6, 4, 3, 3)
    filters = transform_filters(weight)
    monkeypatch.setattr(winograd, "ONEDNN_PRODUCTS", False)
    x = torch.randn(1, 4, 8, 8)
    assert relative_error(winograd_conv3x3(x, filters), F.conv2d(x, weight, padding=1)) < 1e-5


def test_swaps_keep_parameters_state_dict_and_the_global_generator():
    net = nn.Sequential(frozen_conv(3, 256), nn.ReLU(), nn.MaxPool2d(2), frozen_conv(256, 64),
                        nn.Conv2d(256, 256, 1), nn.Conv2d(64, 256, 3, padding=1, stride=2))
    weights = [p for p in net.parameters()]
    keys = list(net.state_dict())
    x = torch.randn(1, 3, 8, 8)
    before = net[0](x)
    state = torch.get_rng_state()
    # Only 3x3, stride 1, padding 1 convolutions with enough output channels are swapped.
    assert use_winograd(net) == 1 and isinstance(net[0], WinogradConv2d)
    assert type(net[3]) is nn.Conv2d and type(net[4]) is nn.Conv2d and type(net[5]) is nn.Conv2d
    assert torch.equal(torch.get_rng_state(), state)
    assert list(net.state_dict()) == keys and all(a is b for a, b in zip(net.parameters(), weights))
    assert relative_error(net[0](x), before) < 1e-5
    assert use_direct(net) == 1 and type(net[0]) is nn.Conv2d and torch.equal(net[0](x), before)


def test_new_weights_loaded_in_place_are_used():
    conv = WinogradConv2d.replacing(frozen_conv(4, 6))
    x = torch.randn(1, 4, 8, 8)
    conv(x)
    fresh = frozen_conv(4, 6, seed=5)
    conv.load_state_dict(fresh.state_dict())
    assert relative_error(conv(x), fresh(x)) < 1e-5


def test_backward_filters_are_built_only_when_a_backward_pass_needs_them():
    """Forward-only use (validation, scoring) keeps one transformed copy of the filters, not two;
    a backward pass builds the second once, and after new weights it follows them."""
    conv = WinogradConv2d.replacing(frozen_conv(4, 6))
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    with torch.no_grad():
        conv(x)
    conv(x)
    assert conv._back_cache is None
    conv(x).square().sum().backward()
    built = conv._back_cache[1]
    conv(x).square().sum().backward()
    assert conv._back_cache[1] is built
    fresh = frozen_conv(4, 6, seed=5)
    conv.load_state_dict(fresh.state_dict())
    x.grad = None
    conv(x).square().sum().backward()
    got = x.grad.clone()
    x.grad = None
    fresh(x).square().sum().backward()
    assert relative_error(got, x.grad) < 1e-5


def test_out_of_the_way_under_autocast_other_dtypes_and_trainable_filters():
    conv = WinogradConv2d.replacing(frozen_conv(4, 6))
    x = torch.randn(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16  # oneDNN's bf16 convolution, not fp32 Winograd
    assert conv.double()(x.double()).dtype == torch.float64
    conv.float().requires_grad_(True)
    conv(x).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def cpuinfo(tmp_path, vendor: str, family: str):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 2\n"
                    f"flags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nvendor_id\t: {vendor}\n"
                    f"cpu family\t: {family}\n")
    return info


def test_the_products_run_in_onednn_only_on_x86():
    assert winograd._onednn_products("aarch64") is False and winograd._onednn_products("arm64") is False
    assert winograd._onednn_products("x86_64") is torch.backends.mkldnn.is_available()


def test_winograd_pays_on_every_cpu_when_its_products_run_in_onednn(tmp_path):
    for vendor, family in (("AuthenticAMD", "26"), ("AuthenticAMD", "25"), ("GenuineIntel", "6")):
        assert winograd.winograd_pays(cpu_family(cpuinfo(tmp_path, vendor, family)), onednn=True) is True


@pytest.mark.parametrize(("vendor", "family", "pays"), [
    ("AuthenticAMD", "26", False),  # Zen 5: full-width AVX-512 for oneDNN, AVX2 for MKL
    ("AuthenticAMD", "27", False),
    ("AuthenticAMD", "25", True),  # Zen 3 and 4
    ("AuthenticAMD", "23", True),
    ("GenuineIntel", "6", True),
])
def test_with_mkl_products_winograd_is_used_except_on_amd_cpus_with_full_width_avx512(tmp_path, vendor,
                                                                                      family, pays):
    cpu = cpu_family(cpuinfo(tmp_path, vendor, family))
    assert cpu == (vendor, int(family))
    assert winograd.winograd_pays(cpu, onednn=False) is pays


def test_an_unknown_cpu_keeps_winograd(tmp_path, monkeypatch):
    assert cpu_family(tmp_path / "missing") is None
    assert cpu_family(cpuinfo(tmp_path, "AuthenticAMD", "")) is None
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n")  # arm64
    assert cpu_family(tmp_path / "cpuinfo") is None
    monkeypatch.setattr(winograd, "ONEDNN_PRODUCTS", False)
    monkeypatch.setattr(winograd, "cpu_family", lambda: None)
    assert winograd.winograd_pays() is True
    monkeypatch.setattr(winograd, "cpu_family", lambda: ("AuthenticAMD", 26))
    assert winograd.winograd_pays() is False


def test_the_trainer_keeps_direct_convolutions_where_winograd_does_not_pay(tmp_path, photo_dir, style_image,
                                                                           monkeypatch):
    from tests.test_train import TINY, make_trainer

    monkeypatch.setattr(trainer_module, "winograd_pays", lambda: False)
    trainer = make_trainer(tmp_path, photo_dir, style_image, TINY)
    convs = [m for m in trainer.extractor.net if isinstance(m, nn.Conv2d)]
    assert any(m.out_channels >= 256 for m in convs)
    assert not any(isinstance(m, WinogradConv2d) for m in convs)


def test_the_trainer_runs_the_wide_loss_layers_as_winograd_on_the_cpu(tmp_path, photo_dir, style_image,
                                                                      monkeypatch):
    from tests.test_train import TINY, make_trainer

    monkeypatch.setattr(trainer_module, "winograd_pays", lambda: True)
    trainer = make_trainer(tmp_path, photo_dir, style_image, TINY)
    convs = [m for m in trainer.extractor.net if isinstance(m, nn.Conv2d)]
    assert [type(m) is WinogradConv2d for m in convs] == [m.out_channels >= 256 for m in convs]
    assert any(type(m) is WinogradConv2d for m in convs)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        fast = trainer.loss.extractor(x)
        use_direct(trainer.extractor.net)
        plain = trainer.loss.extractor(x)
    for name, value in fast.items():
        assert relative_error(value, plain[name]) < 1e-5, name

import hashlib
import socket

import pytest
import torch

from styler.config import Features
from styler.errors import FeatureWeightsError
from styler.nn import vgg as features
from styler.nn.vgg import FeatureExtractor, build_feature_extractor, layer_names


def test_layer_names_follow_vgg_convention():
    names = layer_names(Features.VGG16)
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert "relu4_3" in names and "relu4_4" not in names
    assert "relu4_4" in layer_names(Features.VGG19)


def test_extractor_returns_named_layers_and_stays_frozen():
    ext = build_feature_extractor(Features.RANDOM, ("relu1_1", "relu2_1"), width_divisor=8)
    out = ext(torch.rand(1, 3, 32, 32))
    assert list(out) == ["relu1_1", "relu2_1"]
    assert out["relu2_1"].shape == (1, 16, 16, 16)
    torch.nn.Sequential(ext).train()  # a parent's train() must not unfreeze it
    assert not ext.training
    assert all(not p.requires_grad for p in ext.parameters())


def test_extractor_is_truncated_after_deepest_layer():
    ext = build_feature_extractor(Features.RANDOM, ("relu2_1",), width_divisor=8)
    assert ext.names[-1] == "relu2_1"


def test_random_features_are_seeded():
    a = build_feature_extractor(Features.RANDOM, ("relu1_1",), width_divisor=8, seed=3)
    b = build_feature_extractor(Features.RANDOM, ("relu1_1",), width_divisor=8, seed=3)
    c = build_feature_extractor(Features.RANDOM, ("relu1_1",), width_divisor=8, seed=4)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(a(x)["relu1_1"], b(x)["relu1_1"])
    assert not torch.equal(a(x)["relu1_1"], c(x)["relu1_1"])


def test_calibrate_gives_unit_variance():
    ext = build_feature_extractor(Features.RANDOM, ("relu2_1",), width_divisor=8)
    x = torch.rand(1, 3, 32, 32)
    ext.calibrate(x)
    h = (x - ext.mean) / ext.std
    for module in ext.net:
        h = module(h)
        if isinstance(module, torch.nn.Conv2d):
            assert torch.allclose(h.std(dim=(0, 2, 3)), torch.ones(h.shape[1]), atol=1e-3)


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(FeatureWeightsError, match="relu9_9"):
        FeatureExtractor(Features.VGG16, ("relu9_9",))


def _loopback_only(monkeypatch) -> None:
    """No test may reach the network: resolving any host but this machine fails."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"the test tried to reach {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_missing_imagenet_weights_name_every_way_on_without_touching_the_network(monkeypatch):
    _loopback_only(monkeypatch)  # conftest sets STYLER_OFFLINE: no download is even tried
    with pytest.raises(FeatureWeightsError) as info:
        build_feature_extractor(Features.VGG16, ("relu2_2",))
    message = str(info.value)
    assert "\n" not in message and "STYLER_OFFLINE is set" in message
    for part in ("vgg16-397923af.pth (528 MB", "vgg_weights=FILE", "Caffe-converted .pth", "Keras .h5", "ONNX",
                 "features=random", "palette and fine texture, without its brush strokes"):
        assert part in message, part
    assert "--" not in message  # a library error names arguments; the CLI turns them into its flags


def test_the_cli_names_each_way_on_once_as_the_user_types_it(tmp_path, photo_dir, style_image, monkeypatch):
    from click.testing import CliRunner

    from styler.cli import main

    _loopback_only(monkeypatch)
    result = CliRunner().invoke(main, ["train", "--style", str(style_image), "--content-dir", str(photo_dir),
                                       "--features", "vgg16", "--steps", "1", "--run-dir", str(tmp_path / "run"),
                                       "--weights-dir", str(tmp_path / "w")])
    line = result.stderr.strip().splitlines()[-1]
    assert result.exit_code != 0 and line.startswith("error: ImageNet weights for vgg16"), result.output
    assert line.count("--vgg-weights FILE") == 1 and line.count("--features random") == 1, line


def test_the_download_goes_through_the_https_proxy_and_its_error_is_reported(monkeypatch):
    """Behind a proxy the download is tried through it (a probe of the host would fail there), and
    what the proxy answered is the reason given, in one line."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked = []

    class Proxy(BaseHTTPRequestHandler):
        def do_CONNECT(self):
            asked.append(self.path)
            self.send_error(403, "Forbidden by policy")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _loopback_only(monkeypatch)
        monkeypatch.delenv("STYLER_OFFLINE")
        for name in ("https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{server.server_port}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(FeatureWeightsError) as info:
            build_feature_extractor(Features.VGG16, ("relu2_2",))
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["download.pytorch.org:443"]
    message = str(info.value)
    assert "\n" not in message
    assert "(download failed: <urlopen error Tunnel connection failed: 403 Forbidden by policy>)" in message
    assert not list(features._cache_path(Features.VGG16).parent.iterdir())  # no partial file left


def test_vgg_weights_file_with_wrong_hash_is_rejected(tmp_path):
    bogus = tmp_path / "vgg16-397923af.pth"  # torchvision's name: its hash prefix is checked
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(FeatureWeightsError, match="SHA-256"):
        build_feature_extractor(Features.VGG16, ("relu1_2",), weights_file=bogus)
    with pytest.raises(FeatureWeightsError, match="no such file"):
        build_feature_extractor(Features.VGG16, ("relu1_2",), weights_file=tmp_path / "missing.pth")


def test_vgg_weights_file_is_imported_and_loaded(tmp_path, monkeypatch):
    # A real VGG-16 checkpoint cannot be downloaded here; build one with the official key names
    # and make the expected hash prefix the file's own, which exercises the same code path.
    from torchvision.models import vgg16

    state = {k: v for k, v in vgg16().state_dict().items() if k.startswith("features.")}
    written = tmp_path / "vgg16-local.pth"
    torch.save(state, written)
    prefix = hashlib.sha256(written.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(features, "official_filename", lambda kind: f"vgg16-{prefix}.pth")
    path = written.rename(tmp_path / f"vgg16-{prefix}.pth")  # torchvision's name: imported, not converted
    ext = build_feature_extractor(Features.VGG16, ("relu1_2",), weights_file=path)
    assert torch.equal(ext.net[0].weight, state["features.0.weight"])
    cached = features._cache_path(Features.VGG16)
    assert cached.is_file()
    # Later runs find it in the cache without the flag.
    ext2 = build_feature_extractor(Features.VGG16, ("relu1_2",))
    assert torch.equal(ext2.net[0].weight, state["features.0.weight"])


def test_upto_stops_after_that_layer_with_the_same_values():
    ext = build_feature_extractor(Features.RANDOM, ("relu1_1", "relu2_1", "relu3_1"), width_divisor=8)
    x = torch.rand(1, 3, 32, 32)
    full, short = ext(x), ext(x, upto="relu2_1")
    assert list(short) == ["relu1_1", "relu2_1"]
    assert all(torch.equal(short[k], full[k]) for k in short)
    with pytest.raises(FeatureWeightsError, match="relu4_1"):
        ext(x, upto="relu4_1")


def test_relus_overwrite_their_convolution_unless_it_is_a_requested_layer():
    """In-place ReLUs give the same features and input gradient as copying ones; a requested
    convolution's output keeps its negative values."""
    ext = build_feature_extractor(Features.RANDOM, ("conv1_2", "relu2_1", "relu2_2"), width_divisor=8)
    inplace = {name: m.inplace for name, m in zip(ext.names, ext.net) if isinstance(m, torch.nn.ReLU)}
    assert inplace == {"relu1_1": True, "relu1_2": False, "relu2_1": True, "relu2_2": True}
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = ext(x)
    assert (out["conv1_2"] < 0).any()
    sum(f.square().mean() for f in out.values()).backward()
    got, x.grad = x.grad, None
    for m in ext.net:
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    copied = ext(x)
    assert all(torch.equal(copied[k], out[k]) for k in out)
    sum(f.square().mean() for f in copied.values()).backward()
    assert torch.equal(got, x.grad)

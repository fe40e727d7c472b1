"""VGG weight files people have: the same weights read from every format give the same
features, each format's preprocessing is detected, and broken files fail with one line.

Files are built in tmp_path with widths divided by 8 (fast); one test trains a step through the
CLI with a full-size file. Nothing touches the
network (conftest sets STYLER_OFFLINE and a private TORCH_HOME; one test forbids sockets).
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from styler.cli import main
from styler.config import Features, Preprocess
from styler.errors import FeatureWeightsError
from styler.io.weights import read_info
from styler.nn import vgg_files
from styler.nn.vgg import FeatureExtractor, build_feature_extractor, load_vgg
from styler.nn.vgg_files import read_vgg_file, trunk_convs

DIV = 8
LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_1")


def random_convs(kind: str = "vgg16", div: int = DIV, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=gen) * (2.0 / (9 * shape[1])) ** 0.5,
             torch.randn(shape[0], generator=gen) * 0.1) for _, _, shape in trunk_convs(kind, div)]


def torchvision_state(convs) -> dict[str, torch.Tensor]:
    state = {}
    for (_, index, _), (w, b) in zip(trunk_convs("vgg16"), convs):
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = w, b
    state["classifier.0.weight"] = torch.zeros(4, 4)  # heads are ignored
    return state


def write_pth(path, convs):
    torch.save(torchvision_state(convs), path)
    return path


def write_keras_h5(path, convs, names=None):
    h5py = pytest.importorskip("h5py")
    names = names or [c.name.replace("conv", "block").replace("_", "_conv", 1) for c in trunk_convs("vgg16")]
    with h5py.File(path, "w") as fh:
        # Keras stores layers in its own order in an attribute; groups iterate alphabetically.
        fh.attrs["layer_names"] = np.array([b"input_1"] + [n.encode() for n in names])
        fh.create_group("input_1")
        for name, (w, b) in zip(names, convs):
            group = fh.create_group(name).create_group(name)
            group["kernel:0"] = w.permute(2, 3, 1, 0).numpy()  # OIHW -> HWIO
            group["bias:0"] = b.numpy()
    return path


def write_onnx(path, convs, nhwc: bool, extra_head: bool = True):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    current = "input"
    if nhwc:  # tf2onnx: the NHWC input is transposed to NCHW before the first convolution
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        current = "nchw"
    pools_after = {1, 3, 6, 9}  # after conv1_2, conv2_2, conv3_3, conv4_3
    for i, (w, b) in enumerate(convs):
        inits += [numpy_helper.from_array(w.numpy(), f"k{i}"), numpy_helper.from_array(b.numpy(), f"b{i}")]
        nodes.append(helper.make_node("Conv", [current, f"k{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        current = f"r{i}"
        if i in pools_after:
            nodes.append(helper.make_node("MaxPool", [current], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            current = f"p{i}"
    if extra_head:  # a 1x1 head convolution, as classifiers have: not part of the trunk
        c = convs[-1][0].shape[0]
        inits += [numpy_helper.from_array(np.zeros((2, c, 1, 1), np.float32), "kh"),
                  numpy_helper.from_array(np.zeros(2, np.float32), "bh")]
        nodes.append(helper.make_node("Conv", [current, "kh", "bh"], ["out"], kernel_shape=[1, 1]))
        current = "out"
    shape = ["n", 64, 64, 3] if nhwc else ["n", 3, 64, 64]
    graph = helper.make_graph(nodes, "vgg", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["n", None, None, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def convs():
    return random_convs()


@pytest.fixture
def files(tmp_path, convs):
    return {
        "pth": write_pth(tmp_path / "mine.pth", convs),
        "h5": write_keras_h5(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", convs),
        "onnx_nhwc": write_onnx(tmp_path / "tf2onnx_vgg16.onnx", convs, nhwc=True),
        "onnx_nchw": write_onnx(tmp_path / "zoo_vgg16.onnx", convs, nhwc=False),
    }


def test_every_format_gives_the_same_features(files, convs):
    x = torch.rand(1, 3, 48, 40)
    outputs = {}
    for label, path in files.items():
        ext = build_feature_extractor(Features.VGG16, LAYERS, weights_file=path,
                                      preprocess=Preprocess.TORCHVISION, width_divisor=DIV)
        assert torch.equal(ext.net[0].weight, convs[0][0]), label
        outputs[label] = ext(x)
    reference = outputs.pop("pth")
    for label, out in outputs.items():
        for layer in LAYERS:
            assert torch.allclose(out[layer], reference[layer], atol=1e-6), (label, layer)


def test_each_source_implies_its_preprocessing(tmp_path, files, convs):
    flavours = {label: read_vgg_file(path, "vgg16", DIV)[1] for label, path in files.items()}
    assert flavours == {"pth": Preprocess.TORCHVISION, "h5": Preprocess.CAFFE,
                        "onnx_nhwc": Preprocess.CAFFE, "onnx_nchw": Preprocess.TORCHVISION}
    caffe_pth = write_pth(tmp_path / "vgg16-00b39a1b.pth", convs)  # neural-style-pt's Caffe file
    assert read_vgg_file(caffe_pth, "vgg16", DIV)[1] is Preprocess.CAFFE
    # AUTO follows the file; an explicit choice overrides it.
    assert load_vgg(Features.VGG16, files["onnx_nhwc"], width_divisor=DIV)[1].preprocess is Preprocess.CAFFE
    forced = load_vgg(Features.VGG16, files["onnx_nhwc"], Preprocess.TORCHVISION, width_divisor=DIV)[1]
    assert forced.preprocess is Preprocess.TORCHVISION


def test_caffe_preprocessing_is_bgr_0_255_minus_mean():
    ext = FeatureExtractor(Features.VGG16, ("relu1_1",), width_divisor=DIV, preprocess=Preprocess.CAFFE)
    x = torch.rand(2, 3, 5, 7)
    mean_bgr = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    expected = x[:, [2, 1, 0]] * 255.0 - mean_bgr
    assert torch.allclose(ext.prepare(x), expected, atol=1e-3)
    tv = FeatureExtractor(Features.VGG16, ("relu1_1",), width_divisor=DIV, preprocess=Preprocess.TORCHVISION)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(tv.prepare(x), (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), atol=1e-6)


def test_source_is_described_with_file_and_hash(files):
    source = load_vgg(Features.VGG16, files["onnx_nhwc"], width_divisor=DIV)[1]
    assert source.file == "tf2onnx_vgg16.onnx" and len(source.sha256) == 64
    assert source.describe() == f"vgg16 (caffe, tf2onnx_vgg16.onnx {source.sha256[:8]})"


def test_known_files_carry_their_provenance(files, monkeypatch):
    source = load_vgg(Features.VGG16, files["onnx_nhwc"], width_divisor=DIV)[1]
    assert source.note == ""
    monkeypatch.setitem(vgg_files.KNOWN_FILES, source.sha256, "fine-tuned somewhere")
    assert source.note == "fine-tuned somewhere"
    assert "fine-tuned" in vgg_files.KNOWN_FILES[
        "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"]


def test_conversion_is_cached_and_reused(files, monkeypatch, tmp_path):
    first, _ = load_vgg(Features.VGG16, files["h5"], width_divisor=DIV)
    cached = list((tmp_path.parent).rglob("styler/*.safetensors"))
    assert any(p.name.startswith("vgg16_weights_tf_dim_ordering") for p in cached)

    def no_reader(path):
        raise AssertionError("the converted copy in the cache must be used")

    monkeypatch.setitem(vgg_files.READERS, ".h5", no_reader)
    second, source = load_vgg(Features.VGG16, files["h5"], width_divisor=DIV)
    assert source.preprocess is Preprocess.CAFFE
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_no_network_is_touched(files, monkeypatch):
    def no_socket(*args, **kwargs):
        raise AssertionError("no network access allowed")

    monkeypatch.delenv("STYLER_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    monkeypatch.setattr(socket.socket, "connect", no_socket)
    build_feature_extractor(Features.VGG16, ("relu2_2",), weights_file=files["onnx_nchw"], width_divisor=DIV)


def test_one_wrong_shape_names_the_layer(tmp_path, convs):
    bad = list(convs)
    w, b = bad[5]  # conv3_2
    bad[5] = (w[:, : w.shape[1] // 2], b)
    path = write_keras_h5(tmp_path / "bad.h5", bad)
    with pytest.raises(FeatureWeightsError, match=r"bad.h5: layer conv3_2 has weight"):
        read_vgg_file(path, "vgg16", DIV)


def test_vgg19_file_read_as_vgg16_says_which_it_is(tmp_path):
    path = write_onnx(tmp_path / "vgg19.onnx", random_convs("vgg19"), nhwc=False, extra_head=False)
    with pytest.raises(FeatureWeightsError, match="found 16 3x3 convolutions.*--features vgg19"):
        read_vgg_file(path, "vgg16", DIV)
    state, _ = read_vgg_file(path, "vgg19", DIV)
    assert len(state) == 32


@pytest.mark.parametrize("label", ["pth", "h5", "onnx_nhwc"])
def test_truncated_file_is_one_clear_error(files, label, tmp_path):
    data = files[label].read_bytes()
    cut = tmp_path / f"cut{files[label].suffix}"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(FeatureWeightsError) as info:
        read_vgg_file(cut, "vgg16", DIV)
    message = str(info.value)
    assert message.startswith(cut.name) and "\n" not in message


def test_onnx_without_vgg_trunk(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((4, 3, 1, 1), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    path = tmp_path / "resnet_stub.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(FeatureWeightsError, match="resnet_stub.onnx: no VGG convolution trunk found"):
        read_vgg_file(path, "vgg16")


def test_unknown_extension(tmp_path):
    path = tmp_path / "vgg16.bin"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(FeatureWeightsError, match="unknown VGG weights format"):
        read_vgg_file(path, "vgg16")


def test_train_records_the_features_source(tmp_path, photo_dir, style_image):
    """End to end with a full-size Caffe-named checkpoint: the weights file says which VGG-16
    trained it and with which preprocessing; --vgg-preprocess overrides and is recorded."""
    path = write_pth(tmp_path / "vgg16-00b39a1b.pth", random_convs(div=1))
    runner = CliRunner()
    common = ["train", "--style", str(style_image), "--content-dir", str(photo_dir), "--steps", "1",
              "--image-size", "32", "--style-size", "32", "--batch-size", "1", "--workers", "0",
              "--val-fraction", "0", "--preview-every", "0", "--vgg-weights", str(path),
              "--weights-dir", str(tmp_path / "w"), "--device", "cpu"]
    result = runner.invoke(main, [*common, "--name", "a", "--run-dir", str(tmp_path / "ra")])
    assert result.exit_code == 0, result.output
    meta = read_info(tmp_path / "w" / "a.safetensors").metadata
    assert meta["features_source"].startswith("vgg16 (caffe, vgg16-00b39a1b.pth ")
    assert meta["vgg_weights"]["preprocess"] == "caffe"
    assert meta["generator_config"]["num_downsamples"] == 2  # the default: residual blocks at 1/4
    result = runner.invoke(main, [*common, "--name", "b", "--run-dir", str(tmp_path / "rb"),
                                  "--vgg-preprocess", "torchvision"])
    assert result.exit_code == 0, result.output
    meta = read_info(tmp_path / "w" / "b.safetensors").metadata
    assert meta["vgg_weights"]["preprocess"] == "torchvision"
    assert meta["train_config"]["vgg_preprocess"] == "torchvision"


def test_cli_bad_vgg_file_is_one_line(tmp_path, photo_dir, style_image):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"definitely not protobuf" * 3)
    result = CliRunner().invoke(main, ["train", "--style", str(style_image), "--content-dir", str(photo_dir),
                                       "--steps", "1", "--image-size", "32", "--workers", "0",
                                       "--vgg-weights", str(path), "--weights-dir", str(tmp_path / "w"),
                                       "--run-dir", str(tmp_path / "r"), "--device", "cpu"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: broken.onnx:"), result.output

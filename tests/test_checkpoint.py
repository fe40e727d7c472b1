import json
from pathlib import Path

import pytest
import torch

from styler.config import GeneratorConfig, Upsample
from styler.errors import WeightsError
from styler.io.weights import list_weights, read_info, resolve_weights, save_generator
from styler.nn import Generator
from styler.nn.generator import load_generator

TINY = GeneratorConfig(base_channels=4, num_residual=1)


def saved(tmp_path, name="s", **meta):
    torch.manual_seed(1)
    g = Generator(TINY).eval()
    # Make the instance-norm affine parameters non-trivial so the round trip tests them too.
    for p in g.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    path = save_generator(tmp_path / f"{name}.safetensors", g, {"style_name": name, "features": "random", **meta})
    return g, path


def test_round_trip_reproduces_outputs_exactly(tmp_path):
    g, path = saved(tmp_path, steps=7)
    loaded, info = load_generator(path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(g(x), loaded(x))
    assert info.generator == TINY
    assert info.metadata["steps"] == 7 and info.features == "random"
    assert info.metadata["format"] == "styler-generator" and "styler_version" in info.metadata


def test_no_temp_files_left_behind(tmp_path):
    saved(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]


def test_corrupted_file_is_rejected_naming_the_file(tmp_path):
    _, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(WeightsError, match="s.safetensors"):
        load_generator(path)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="s.safetensors"):
        load_generator(path)


def test_foreign_safetensors_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="not a styler generator"):
        load_generator(path)


def test_architecture_mismatch_is_rejected(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, path = saved(tmp_path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta["generator_config"] = json.dumps({"base_channels": 8, "num_downsamples": TINY.num_downsamples,
                                           "num_residual": 1})  # TINY is 4 wide
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(WeightsError, match="shape"):
        load_generator(path)


def test_nan_weights_are_rejected(tmp_path):
    g = Generator(TINY)
    with torch.no_grad():
        next(g.parameters()).fill_(float("nan"))
    path = save_generator(tmp_path / "nan.safetensors", g, {})
    with pytest.raises(WeightsError, match="NaN"):
        load_generator(path)


def test_resolve_by_name_and_path_and_list_available(tmp_path):
    _, path = saved(tmp_path, "mine")
    assert resolve_weights("mine", tmp_path) == path
    assert resolve_weights(str(path), tmp_path / "elsewhere") == path
    bundled_and_mine = r"matisse, matisse-video, mine, shipwreck, shipwreck-video, starry, starry-video"
    with pytest.raises(WeightsError, match=rf"available: {bundled_and_mine};"):
        resolve_weights("nope", tmp_path)


def test_list_weights_reports_broken_files(tmp_path):
    saved(tmp_path, "good")
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    found = list_weights(tmp_path)
    assert read_info(tmp_path / "good.safetensors").name == "good"
    assert [type(x).__name__ for x in found] == ["WeightsError", "WeightsInfo"]


def test_weights_file_gets_normal_permissions(tmp_path):
    plain = tmp_path / "plain"
    plain.touch()  # the permissions any new file gets, not mkstemp's 0600
    _, path = saved(tmp_path)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def rewrite_generator_fields(path, version="2", **changes):
    """Rewrite a weights file's header: ``changes`` set generator fields, a value of None removes
    the field (as files written before it existed lack it)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    fields = json.loads(meta["generator_config"])
    for name, value in changes.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    meta["generator_config"] = json.dumps(fields)
    meta["format_version"] = version
    save_file(tensors, str(path), metadata=meta)


def test_files_without_num_downsamples_load_with_three_halvings(tmp_path):
    """The bundled matisse files name no num_downsamples; they were built with three halvings."""
    torch.manual_seed(4)
    g = Generator(GeneratorConfig(base_channels=4, num_residual=1, num_downsamples=3)).eval()
    path = save_generator(tmp_path / "coarse.safetensors", g, {"style_name": "coarse"})
    assert GeneratorConfig().num_downsamples != 3
    rewrite_generator_fields(path, num_downsamples=None)
    loaded, info = load_generator(path)
    assert info.generator.stride == 8
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(g(x), loaded(x))


def test_bilinear_generator_round_trips(tmp_path):
    g = Generator(GeneratorConfig(base_channels=4, num_residual=1, upsample=Upsample.BILINEAR)).eval()
    path = save_generator(tmp_path / "b.safetensors", g, {"style_name": "b", "features": "random"})
    loaded, info = load_generator(path)
    assert info.generator.upsample is Upsample.BILINEAR
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(g(x), loaded(x))


def test_files_of_another_format_version_are_refused(tmp_path):
    _, path = saved(tmp_path)
    rewrite_generator_fields(path, version="1")
    with pytest.raises(WeightsError, match=r"format version 1 is not supported by styler .* \(expects 2\)"):
        load_generator(path)


def test_run_descriptions_of_another_version_are_refused():
    from styler.config import TrainConfig
    from styler.errors import ConfigError
    from styler.training.runs import RunSpec

    spec = RunSpec(TrainConfig(), Path("s.png"), Path("photos"), Path("weights"))
    data = spec.to_dict()
    assert RunSpec.from_dict(data) == spec
    del data["version"]
    with pytest.raises(ConfigError, match="run description version None is not supported"):
        RunSpec.from_dict(data)

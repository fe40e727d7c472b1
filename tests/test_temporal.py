"""Steady frames: shared / EMA statistics, scene cuts, the frame iterator, and the flicker they save."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from benchmarks.bench_video import panned_clip, stylize_clip
from styler.config import GeneratorConfig, Temporal, VideoConfig
from styler.errors import ConfigError
from styler.inference.stylizer import Stylizer
from styler.inference.temporal import SceneCuts, pooled, warping_error
from styler.inference.tiling import GlobalStatsGenerator, NormMode
from styler.nn import Generator

TINY = GeneratorConfig(base_channels=4, num_residual=1)


def stylizer(seed: int = 0, **config) -> Stylizer:
    torch.manual_seed(seed)
    from styler.config import ApplyConfig

    return Stylizer(Generator(TINY), config=ApplyConfig(**config))


def test_pooled_statistics_are_those_of_the_frames_side_by_side():
    x = torch.rand(3, 5, 8, 6)
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
    m, v = pooled(mean, var)
    whole_var, whole_mean = torch.var_mean(torch.cat(list(x), -1), dim=(1, 2), unbiased=False)
    torch.testing.assert_close(m.flatten(), whole_mean)
    torch.testing.assert_close(v.flatten(), whole_var)


def test_identical_frames_give_the_single_image_result_in_every_mode():
    st = stylizer()
    frame = (torch.rand(3, 40, 56) * 255).round() / 255  # on the uint8 grid, as frames are stylized
    alone = st(frame)
    for temporal in Temporal:
        for out in st.stylize_frames([frame] * 5, VideoConfig(temporal, batch_size=2, stats_frames=3)):
            torch.testing.assert_close(out, alone, atol=2 / 255, rtol=0)  # uint8 rounding inside


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_statistics_lower_flicker_on_a_pan(seed):
    """A pan by 8 px a frame (the generator's stride, so the network samples every frame on the
    same grid): what still changes between aligned frames comes from per-frame statistics."""
    torch.manual_seed(100 + seed)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 20), size=(48, 112), mode="bilinear")[0]
    clip = panned_clip(photo, frames=6, width=64, step=8)
    st = stylizer(seed)
    errors = {t: warping_error(stylize_clip(st, clip, t), (0, 8), margin=4) for t in Temporal}
    assert errors[Temporal.SHARED] < 0.9 * errors[Temporal.OFF], errors
    assert errors[Temporal.EMA] < errors[Temporal.OFF], errors


def test_scene_cuts_found_from_frame_differences():
    a, b = torch.zeros(3, 30, 40), torch.ones(3, 30, 40)
    noisy = (a + 0.05 * torch.rand(4, 3, 30, 40))
    cuts = SceneCuts(threshold=0.25)
    assert cuts(noisy) == [True, False, False, False]  # the first frame starts a shot; noise does not
    assert cuts(torch.stack([b, b, a])) == [True, False, True]


def test_ema_restarts_at_a_cut():
    """After a cut the running statistics are the new shot's own: the first frame of the new shot
    comes out as if stylized alone, whatever came before."""
    st = stylizer()
    # frames on the uint8 grid, as frames are stylized (the tiny network amplifies rounding)
    dark, light = (torch.rand(3, 32, 32) * 76).round() / 255, (178 + torch.rand(3, 32, 32) * 77).round() / 255
    out = list(st.stylize_frames([dark, dark, light], VideoConfig(Temporal.EMA, batch_size=3)))
    torch.testing.assert_close(out[2], st(light), atol=2 / 255, rtol=0)
    smooth = list(st.stylize_frames([dark, dark, light], VideoConfig(Temporal.EMA, batch_size=3, cut_threshold=1.0)))
    assert (smooth[2] - st(light)).abs().max() > 0.05  # no cut: the dark frames' statistics linger


def test_frames_iterator_takes_pil_and_tensors_and_keeps_their_kind():
    st = stylizer()
    pil = [Image.new("RGB", (20, 12), (i * 40, 90, 30)) for i in range(3)]
    out = list(st.stylize_frames(pil, VideoConfig(Temporal.SHARED)))
    assert [type(o) for o in out] == [Image.Image] * 3 and out[0].size == (20, 12)
    tensors = list(st.stylize_frames(iter([torch.rand(3, 12, 20)] * 2)))
    assert tensors[0].shape == (3, 12, 20) and tensors[0].dtype == torch.float32
    # docs/api.md's webcam loop: (3, H, W) uint8 frames from a generator, one at a time
    camera = (torch.randint(0, 256, (3, 12, 20), dtype=torch.uint8) for _ in range(3))
    frames = list(st.stylize_frames(camera, VideoConfig(Temporal.EMA, batch_size=1)))
    assert len(frames) == 3 and frames[0].dtype == torch.uint8 and frames[0].shape == (3, 12, 20)


def test_shared_statistics_serve_a_whole_batch():
    net = GlobalStatsGenerator(Generator(TINY))
    for norm in net.norms:
        norm.mode, norm.smooth = NormMode.SMOOTH, pooled
    net(torch.rand(2, 3, 16, 16))
    for norm in net.norms:
        assert norm.mean.shape[0] == 1
        norm.mode = NormMode.FIXED
    assert net(torch.rand(5, 3, 16, 16)).shape == (5, 3, 16, 16)


def test_tiled_frames_use_the_clip_statistics():
    """Frames too big to run whole are tiled with the clip's statistics: close to the untiled run."""
    st, tiled = stylizer(), stylizer(tile=64)
    frames = [torch.rand(3, 96, 128)] * 3
    whole = list(st.stylize_frames(frames, VideoConfig(Temporal.SHARED)))
    parts = list(tiled.stylize_frames(frames, VideoConfig(Temporal.SHARED)))
    assert max(float((a - b).abs().mean()) for a, b in zip(whole, parts)) < 0.02


def test_frames_take_their_steadying_from_the_video_config_as_files_do():
    """One source of truth: no config means VideoConfig()'s temporal mode (SHARED), as for files,
    and a Temporal passed where the VideoConfig goes is refused at the call."""
    st = stylizer()
    frames = [torch.rand(3, 24, 32) for _ in range(4)]
    default = list(st.stylize_frames(frames))
    shared = list(st.stylize_frames(frames, VideoConfig(Temporal.SHARED)))
    ema = list(st.stylize_frames(frames, VideoConfig(Temporal.EMA)))
    assert VideoConfig().temporal is Temporal.SHARED
    assert all(torch.equal(a, b) for a, b in zip(default, shared))
    assert not all(torch.equal(a, b) for a, b in zip(default, ema))
    with pytest.raises(ConfigError, match="config must be a VideoConfig"):
        st.stylize_frames(frames, Temporal.EMA)

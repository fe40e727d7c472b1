"""Statements in README.md and docs/performance.md that the code can check."""

import re
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from styler.config import GeneratorConfig, Upsample
from styler.inference.tiling import GlobalStatsGenerator
from styler.nn import Generator

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE = " ".join((ROOT / "docs" / "performance.md").read_text().split())
README = " ".join((ROOT / "README.md").read_text().split())


def test_tiling_arithmetic_uses_the_default_generator():
    config = GeneratorConfig()
    blocks = config.num_residual * 2 * 64 * 64 * 9 // 64  # two 64-channel 3x3 convs at 1/8 resolution
    assert f"residual blocks {blocks} ({config.num_residual} x 1152)" in PERFORMANCE
    with FlopCounterMode(display=False) as counter:
        Generator(config)(torch.rand(1, 3, 256, 256))
    untiled = counter.get_total_flops() / 2 / 256 ** 2
    assert abs(untiled - 8400) / 8400 < 0.01 and "against 8400 for one untiled forward" in PERFORMANCE
    tiled = 432 + 720 + 1008 + blocks + 608 + 1216 + 1648
    assert round(tiled / untiled, 2) == 1.35 and "about 1.35x the compute" in PERFORMANCE
    assert "about 1.35 times the multiply-adds" in README and "1.5 times the compute" not in README


def test_tile_context_sizes_are_the_codes():
    for upsample, phrase in ((Upsample.BILINEAR, "{margin} px of context with the default bilinear decoder"),
                             (Upsample.NEAREST, "{margin} px with `--upsample nearest`")):
        tiler = GlobalStatsGenerator(Generator(GeneratorConfig(upsample=upsample)))
        assert phrase.format(margin=tiler.margin) in PERFORMANCE
    bilinear = GlobalStatsGenerator(Generator(GeneratorConfig())).decoder_margin
    nearest = GlobalStatsGenerator(Generator(GeneratorConfig(upsample=Upsample.NEAREST))).decoder_margin
    assert (f"({bilinear} low-resolution positions of context with the default bilinear decoder, {nearest} with"
            in PERFORMANCE)


def test_no_stale_or_outside_claims():
    assert "not done here" not in PERFORMANCE and "tqdm" not in PERFORMANCE
    assert "FIELD.md" not in PERFORMANCE  # figures from outside the repository break the same-run rule
    assert "no checkerboard or grid artifacts" not in README and "--upsample nearest" in README
    assert re.search(r"On the CPU the resumed run is bit for bit", README)
    assert "On CUDA it is not bit for bit" in README
    assert "styler train --resume runs/starry --force --lr 5e-4" in README

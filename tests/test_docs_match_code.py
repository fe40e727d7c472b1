"""Statements in README.md and docs/performance.md that the code can check."""

from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from styler.config import GeneratorConfig, Upsample
from styler.inference.tiling import GlobalStatsGenerator
from styler.nn import Generator

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE = " ".join((ROOT / "docs" / "performance.md").read_text().split())
README = " ".join((ROOT / "README.md").read_text().split())


def _tiling_cost(config: GeneratorConfig) -> tuple[list[int], int, int, list[int], int, int]:
    """Multiply-adds per input pixel of exact tiling's passes (styler.inference.tiling): a prefix
    pass up to each encoder norm but the last, the build of the last norm's input, the residual
    blocks, a prefix pass up to each decoder norm, the final decoder pass; and one untiled forward."""
    g = Generator(config)
    encoder, _, decoder = g.stages()
    pixels, reached = 256 * 256, {}

    def norms(layers: list[nn.Module]) -> list[nn.Module]:
        return [m for layer in layers for m in layer.modules() if isinstance(m, nn.InstanceNorm2d)]

    def note(module: nn.Module, _) -> None:
        reached[module] = counter.get_total_flops() // 2 // pixels

    with FlopCounterMode(display=False) as counter:
        for module in [*norms(encoder), decoder[0], *norms(decoder)]:
            module.register_forward_pre_hook(note)
        g(torch.rand(1, 3, 256, 256))
    untiled = counter.get_total_flops() // 2 // pixels
    *prefix, build = (reached[m] for m in norms(encoder))
    start = reached[decoder[0]]
    return prefix, build, start - build, [reached[m] - start for m in norms(decoder)], untiled - start, untiled


def test_tiling_arithmetic_is_the_default_generators():
    config = GeneratorConfig()
    prefix, build, blocks, decoder_prefix, final, untiled = _tiling_cost(config)
    tiled = sum(prefix) + build + blocks + sum(decoder_prefix) + final
    joined = " + ".join
    assert (f"encoder {joined(map(str, prefix))} (prefix passes) + {build} (build), residual blocks {blocks} "
            f"({config.num_residual} x {blocks // config.num_residual}), decoder {joined(map(str, decoder_prefix))} "
            f"(prefix passes) + {final} (final) = about {tiled} against {untiled} for one untiled forward"
            in PERFORMANCE)
    assert f"about {tiled / untiled:.2f}x the compute" in PERFORMANCE
    assert f"about {tiled / untiled:.2f} times the multiply-adds" in README


def test_tile_context_sizes_are_the_codes():
    for upsample, phrase in ((Upsample.BILINEAR, "{margin} px of context with the default bilinear decoder"),
                             (Upsample.NEAREST, "{margin} px with `--upsample nearest`")):
        tiler = GlobalStatsGenerator(Generator(GeneratorConfig(upsample=upsample)))
        assert phrase.format(margin=tiler.margin) in PERFORMANCE
    bilinear = GlobalStatsGenerator(Generator(GeneratorConfig())).decoder_margin
    nearest = GlobalStatsGenerator(Generator(GeneratorConfig(upsample=Upsample.NEAREST))).decoder_margin
    assert (f"({bilinear} low-resolution positions of context with the default bilinear decoder, {nearest} with"
            in PERFORMANCE)

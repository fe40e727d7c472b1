"""Peak memory and time of tiled vs. untiled stylization on the CPU.

Each measurement runs in a fresh subprocess so ``ru_maxrss`` (the peak resident set size) is
that measurement's alone; tracemalloc would miss torch's allocations. The generator is the
default architecture with seeded random weights (speed and memory do not depend on the weights).

    python benchmarks/bench_tiling.py                     # 8000x6000 tiled, untiled at smaller sizes
    python benchmarks/bench_tiling.py --size 4000x3000 --untiled 1000x750,2000x1500
    python benchmarks/bench_tiling.py --stats downscaled   # statistics from a 1024-px copy

The cost of tiling is the tiled time over the untiled time at the largest untiled size (same
process layout, same machine load at about the same moment).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _child(mode: str, width: int, height: int, tile: int, stats: str) -> None:
    import torch

    from styler.inference.stylizer import Stylizer
    from styler.config import ApplyConfig, TileStats
    from styler.nn import Generator

    torch.manual_seed(0)
    # stroke scale 1: the network at the full size, which is what tiling is measured on
    config = ApplyConfig(tile=tile if mode == "tiled" else None, max_tile_pixels=0, tile_stats=TileStats(stats),
                         stroke_scale=1.0)
    stylizer = Stylizer(Generator().eval(), device="cpu", config=config)
    x = torch.rand(1, 3, height, width) if mode != "baseline" else torch.rand(1, 3, 64, 64)
    start = time.perf_counter()
    out = stylizer(x)
    seconds = time.perf_counter() - start
    assert out.shape == x.shape
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"mode": mode, "width": width, "height": height, "tile": tile, "stats": stats,
                      "peak_mib": round(peak_mib), "seconds": round(seconds, 2),
                      "input_mib": round(x.numel() * 4 / 2**20)}))


def _measure(mode: str, width: int, height: int, tile: int, stats: str = "exact") -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, f"{width}x{height}", str(tile), stats],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="8000x6000", help="image size for the tiled run, WxH")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--untiled", default="1000x750,2000x1500,4000x3000",
                        help="sizes measured untiled, then extrapolated linearly in pixels")
    parser.add_argument("--stats", default="exact", choices=["exact", "downscaled"],
                        help="where the tiles get their instance-norm statistics")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, size, tile, stats = args.child
        _child(mode, *_size(size), int(tile), stats)
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    base = _measure("baseline", 64, 64, args.tile)
    print(f"baseline (python + torch + model, 64x64): {base['peak_mib']} MiB", flush=True)
    width, height = _size(args.size)
    untiled = [_measure("untiled", *_size(s), args.tile) for s in args.untiled.split(",")]
    for r in untiled:
        print(f"untiled {r['width']}x{r['height']}: peak {r['peak_mib']} MiB, {r['seconds']} s", flush=True)
    # Peak memory above the baseline grows linearly with the pixel count; fit the last two points.
    a, b = untiled[-2], untiled[-1]
    pa, pb = a["width"] * a["height"], b["width"] * b["height"]
    per_pixel = (b["peak_mib"] - a["peak_mib"]) / (pb - pa)
    need = b["peak_mib"] + per_pixel * (width * height - pb)
    print(f"untiled {width}x{height}: extrapolated peak {need / 1024:.1f} GiB "
          f"({per_pixel * 2**20:.0f} bytes per pixel)", flush=True)
    same = _measure("tiled", b["width"], b["height"], args.tile, args.stats)
    print(f"tiled {b['width']}x{b['height']} ({args.stats} statistics, tile {args.tile}): peak {same['peak_mib']} MiB, "
          f"{same['seconds']} s = {same['seconds'] / b['seconds']:.2f}x the untiled time", flush=True)
    tiled = _measure("tiled", width, height, args.tile, args.stats)
    print(f"tiled {width}x{height} ({args.stats} statistics, tile {args.tile}): peak {tiled['peak_mib']} MiB, "
          f"{tiled['seconds']} s (input and output tensors alone: {2 * tiled['input_mib']} MiB)")


if __name__ == "__main__":
    main()

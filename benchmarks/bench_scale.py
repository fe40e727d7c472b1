"""Images/s of ``styler apply`` on this machine's pipeline and on a local Ray cluster (``--engine
ray``) with 1 and 2 workers, over the same photos, in one run.

The photos are made from samples/content (crops and flips, so no two are alike), written as
JPEGs of ``--size`` px. One local cluster is started for the run with one CPU a worker (Ray runs
each worker's torch on that many threads), so the baseline for the Ray overhead is the local
pipeline on one thread: the overhead per image is (seconds per image on one Ray worker) minus
(seconds per image locally on one thread), reported against the latter. The local pipeline on
every core is reported too: what a single machine does without Ray. To spread a busy machine's
drift over every engine alike, the photos go through in ``--rounds`` rounds, each engine in
turn (the order reversed every other round); a worker pool's start (a process per worker that
loads the style) is timed apart from its images/s, as a local run's loading is.

    PYTHONPATH=. python -m benchmarks.bench_scale                     # 200 photos of 1024 px
    PYTHONPATH=. python -m benchmarks.bench_scale --count 40 --size 512 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, ImageOps

from benchmarks.common import loadavg, machine_info
from styler.config import ApplyConfig, ClusterConfig, FolderConfig
from styler.inference.cluster import apply_on_cluster
from styler.inference.pipeline import apply_to_paths
from styler.inference.stylizer import Stylizer

ROOT = Path(__file__).resolve().parent.parent


def make_photos(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` distinct ``size`` px square JPEGs cut from samples/content."""
    sources = [ImageOps.exif_transpose(Image.open(p)).convert("RGB")
               for p in sorted((ROOT / "samples" / "content").glob("*.jpg"))]
    paths = []
    for i in range(count):
        photo = sources[i % len(sources)]
        side = min(photo.size)
        crop = int(side * (0.55 + 0.45 * ((i * 7) % 10) / 10))  # 55..100% of the short side
        left = (photo.width - crop) * ((i * 3) % 5) // 4
        top = (photo.height - crop) * ((i * 5) % 3) // 2
        image = photo.crop((left, top, left + crop, top + crop)).resize((size, size), Image.Resampling.LANCZOS)
        if (i // len(sources)) % 2:
            image = ImageOps.mirror(image)
        paths.append(folder / f"photo{i:04}.jpg")
        image.save(paths[-1], quality=92)
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=200, help="photos")
    p.add_argument("--size", type=int, default=1024, help="photo side in px")
    p.add_argument("--style", default="starry", help="style name or .safetensors path")
    p.add_argument("--weights-dir", type=Path, default=None)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes to time")
    p.add_argument("--rounds", type=int, default=2,
                   help="the photos split into this many rounds, the engines' order reversed every other one")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


def _local(stylizer: Stylizer, threads: int) -> Callable[[list[tuple[Path, Path]]], float]:
    def run(pairs: list[tuple[Path, Path]]) -> float:
        torch.set_num_threads(threads)
        summary = apply_to_paths(stylizer, pairs, FolderConfig(overwrite=True))
        assert not summary.failed, summary.failed
        return summary.seconds
    return run


def _ray(args: argparse.Namespace, workers: int, starts: list[float]) -> Callable[[list[tuple[Path, Path]]], float]:
    def run(pairs: list[tuple[Path, Path]]) -> float:
        begun = time.perf_counter()
        summary = apply_on_cluster(args.style, pairs, [], weights_dir=args.weights_dir, device="cpu",
                                   folder=FolderConfig(overwrite=True), cluster=ClusterConfig(workers=workers))
        assert not summary.failed, summary.failed
        starts.append(time.perf_counter() - begun - summary.seconds)
        return summary.seconds
    return run


def measure(args: argparse.Namespace, photos: list[Path], out: Path) -> dict[str, Any]:
    cores = torch.get_num_threads()
    stylizer = Stylizer.load(args.style, weights_dir=args.weights_dir, device="cpu", config=ApplyConfig())
    starts: dict[str, list[float]] = {f"ray{w}": [] for w in args.workers}
    engines = {"local1": _local(stylizer, 1), f"local{cores}": _local(stylizer, cores),
               **{f"ray{w}": _ray(args, w, starts[f"ray{w}"]) for w in args.workers}}
    apply_to_paths(stylizer, [(photos[0], out / "warm-up" / photos[0].name)])  # first-call set-up, untimed
    seconds = dict.fromkeys(engines, 0.0)
    per_round = -(-len(photos) // args.rounds)
    for r in range(args.rounds):
        chunk = photos[r * per_round:(r + 1) * per_round]
        for name in list(engines)[::1 if r % 2 == 0 else -1]:  # A B C D, then D C B A: drift hits all alike
            took = engines[name]([(p, out / name / p.name) for p in chunk])
            seconds[name] += took
            print(f"round {r + 1}: {name} {len(chunk)} photos in {took:.1f} s", file=sys.stderr, flush=True)
    torch.set_num_threads(cores)
    rates = {name: len(photos) / s for name, s in seconds.items()}
    base = 1 / rates["local1"]
    rows: dict[str, Any] = {"images_per_s": {k: round(v, 3) for k, v in rates.items()},
                            "pool_start_s": {k: round(sum(v) / len(v), 2) for k, v in starts.items()},
                            "seconds_per_image_local1": round(base, 4)}
    if 1 in args.workers:
        overhead = 1 / rates["ray1"] - base
        rows["ray_overhead_per_image_s"] = round(overhead, 4)
        rows["ray_overhead_percent"] = round(100 * overhead / base, 1)
    for w in args.workers:
        if w != 1 and 1 in args.workers:
            rows[f"scaling_ray{w}_over_ray1"] = round(rates[f"ray{w}"] / rates["ray1"], 2)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        photos = make_photos(Path(tmp), args.count, args.size)
        started = time.perf_counter()
        import ray

        owned = not ray.is_initialized()
        if owned:  # one cluster for every pool of the run, its start timed apart
            ray.init(num_cpus=torch.get_num_threads(), include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
        cluster_start = time.perf_counter() - started
        try:
            rows = measure(args, photos, Path(tmp) / "out")
        finally:
            if owned:
                ray.shutdown()
    result = {"machine": {**machine_info(torch.device("cpu")), "loadavg": load_before, "loadavg_after": loadavg()},
              "photos": args.count, "size": args.size, "style": args.style, "rounds": args.rounds,
              "cluster_start_s": round(cluster_start, 1), **rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    machine = result["machine"]
    print(f"{result['photos']} photos of {result['size']} px, style {result['style']}, {machine['cpu']}, "
          f"{machine['cores']} cores, load {machine['loadavg']} -> {machine['loadavg_after']}, "
          f"{machine['date_utc']} UTC, commit {machine['commit']}")
    print(f"local Ray cluster started in {result['cluster_start_s']} s")
    for name, rate in result["images_per_s"].items():
        start = result["pool_start_s"].get(name)
        print(f"  {name:8} {rate:7.3f} images/s" + (f"   (pool start {start} s)" if start is not None else ""))
    if "ray_overhead_percent" in result:
        print(f"Ray overhead per image: {result['ray_overhead_per_image_s'] * 1000:.1f} ms "
              f"= {result['ray_overhead_percent']}% of {result['seconds_per_image_local1'] * 1000:.0f} ms "
              f"(the local pipeline on one thread)")
    for key, value in result.items():
        if key.startswith("scaling_"):
            print(f"{key}: {value}x")


if __name__ == "__main__":
    main()

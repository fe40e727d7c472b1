"""Quality parity: train styler's generator and Johnson's TransformerNet under one budget.

Both networks see the same batches (same seed, same crops), the same loss network, loss
weights, optimiser and learning-rate schedule; training steps are interleaved so CPU contention
hits both alike. At the end both stylize held-out photos, and we report their validation
content and style losses (weighted as in training) and write a side-by-side PNG
(rows: photos; columns: photo, styler, TransformerNet).

styler's generator is trained by a :class:`styler.training.trainer.Trainer` through its own
``train_step``, so the step measured is the one users run. TransformerNet runs in a small loop of
its own on that Trainer's loss module, with the Trainer's optimiser settings (Adam at ``--lr``,
cosine decay to ``LR_FLOOR``). The adversarial term is left out: it adds a second network whose
noise would blur a short comparison, and the parity target is about content + style loss.

    PYTHONPATH=. python -m benchmarks.compare_quality --steps 300 --image-size 128
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import REPO, loadavg, machine_info, sync
from benchmarks.transformer_net import TransformerNet
from styler.config import LR_FLOOR, Features, LossConfig, TrainConfig
from styler.io.images import find_images, load_rgb, pil_to_tensor, tensor_to_pil
from styler.training.trainer import Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=Path, default=REPO / "runs" / "photos",
                   help="training photos (exported from scikit-image if the folder is missing)")
    p.add_argument("--val", type=Path, default=REPO / "samples" / "content", help="held-out photos")
    p.add_argument("--style", type=Path, default=REPO / "samples" / "styles" / "starry_night.jpg")
    p.add_argument("--features", choices=[f.value for f in Features], default="random")
    p.add_argument("--feature-width-divisor", type=int, default=1,
                   help="random features only: divide VGG widths (same for both networks)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--val-size", type=int, default=256, help="held-out photos are centre-cropped to this")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--nets", nargs="+", choices=["styler", "transformer_net"], default=["styler", "transformer_net"])
    p.add_argument("--eval-every", type=int, default=0, help="validation curve every N steps (0: end only)")
    p.add_argument("--target-loss", type=float, default=None,
                   help="record the training time at which validation content+style first falls to this")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda: bf16 autocast, as in training)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "quality")
    return p.parse_args(argv)


def ensure_photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        import importlib.util

        spec = importlib.util.spec_from_file_location("export", REPO / "scripts" / "export_skimage_photos.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        module.main(folder)
    return find_images(folder)


def centre_crop(path: Path, size: int) -> torch.Tensor:
    image = load_rgb(path)
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return pil_to_tensor(image.crop((left, top, left + size, top + size)))


class Run:
    """One network trained on ``trainer``'s losses and its training time: the Trainer's own
    generator through ``train_step``, or ``net`` (the baseline) with an Adam and schedule of its own."""

    def __init__(self, name: str, trainer: Trainer, net: torch.nn.Module | None = None) -> None:
        self.name, self.trainer, self.device, self.seconds = name, trainer, trainer.device, 0.0
        self.net = trainer.generator if net is None else net.to(trainer.device).train()
        if net is not None:
            cfg = trainer.config
            self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, cfg.steps, cfg.lr * LR_FLOOR)
        self.curve: list[tuple[int, float, float]] = []
        self.to_target: tuple[int, float] | None = None
        self.last: dict[str, float] = {}

    def _train_step(self, batch: torch.Tensor) -> dict[str, float]:
        if self.net is self.trainer.generator:
            return self.trainer.train_step(batch)
        with self.trainer._autocast():
            total = self.trainer.loss(self.net(batch), batch)["total"]
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.sched.step()
        return {"total": float(total.detach())}

    def step(self, batch: torch.Tensor) -> None:
        sync(self.device)
        start = time.perf_counter()
        self.last = self._train_step(batch)
        sync(self.device)
        self.seconds += time.perf_counter() - start


@torch.no_grad()
def validate(run: Run, images: torch.Tensor, weights: LossConfig) -> dict[str, float]:
    run.net.eval()
    outs, content, style = [], 0.0, 0.0
    for image in images.split(1):
        with run.trainer._autocast():
            out = run.net(image).float().clamp(0, 1)
        terms = run.trainer.loss(out, image)
        content += float(terms["content"]) / len(images)
        style += float(terms["style"]) / len(images)
        outs.append(out)
    run.net.train()
    run.outputs = torch.cat(outs)  # type: ignore[attr-defined]
    return {"content": content, "style": style,
            "content_plus_style": weights.content_weight * content + weights.style_weight * style}


def side_by_side(images: torch.Tensor, columns: list[torch.Tensor], path: Path) -> Path:
    rows = [torch.cat([images[i], *[c[i] for c in columns]], dim=-1) for i in range(len(images))]
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor_to_pil(torch.cat(rows, dim=-2)).save(path)
    return path


def make_trainer(args: argparse.Namespace, weights: LossConfig, device: torch.device) -> Trainer:
    kind = Features(args.features)
    config = TrainConfig(name="styler", steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                         style_size=args.style_size, lr=args.lr, features=kind, seed=args.seed,
                         num_workers=args.workers, val_fraction=0.0, preview_every=0, loss=weights,
                         feature_width_divisor=args.feature_width_divisor if kind is Features.RANDOM else 1)
    torch.manual_seed(args.seed)
    trainer = Trainer(config, args.style, args.photos, args.out / "weights", device,
                      run_dir=args.out / "runs" / "styler", force=True)
    trainer.generator.train()
    return trainer


def train_both(args: argparse.Namespace, weights: LossConfig, val: torch.Tensor, device: torch.device) -> list[Run]:
    """Interleaved training; with ``--eval-every`` a validation curve and the time to
    ``--target-loss`` per network (training seconds, evaluation excluded)."""
    trainer = make_trainer(args, weights, device)
    runs = [Run(name, trainer, TransformerNet() if name == "transformer_net" else None) for name in args.nets]
    loader = iter(trainer._loader())  # one stream of batches, fed to both
    for step in range(1, args.steps + 1):
        batch = next(loader)[0].to(device)
        for run in runs:  # interleaved: contention hits both networks alike
            run.step(batch)
        if args.eval_every and (step % args.eval_every == 0 or step == args.steps):
            for run in runs:
                value = validate(run, val, weights)["content_plus_style"]
                run.curve.append((step, round(run.seconds, 2), round(value, 5)))
                if args.target_loss is not None and run.to_target is None and value <= args.target_loss:
                    run.to_target = (step, round(run.seconds, 2))
        if step % max(1, args.steps // 10) == 0:
            print(f"step {step}: " + "  ".join(f"{r.name} loss {r.last['total']:.4f} {r.seconds:.0f}s"
                                               for r in runs) + f"  load {loadavg()}", flush=True)
    return runs


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    weights = LossConfig(adv_weight=0.0)
    paths = ensure_photos(args.photos)
    val = torch.stack([centre_crop(p, args.val_size) for p in find_images(args.val)]).to(device)
    load_start = loadavg()
    runs = train_both(args, weights, val, device)
    result: dict[str, object] = {"machine": machine_info(device), "loadavg_start": load_start,
                                 "features": args.features, "feature_width_divisor": args.feature_width_divisor,
                                 "steps": args.steps, "batch_size": args.batch_size, "image_size": args.image_size,
                                 "photos": len(paths), "val_photos": len(val), "target_loss": args.target_loss}
    for run in runs:
        result[run.name] = {**validate(run, val, weights), "train_s": round(run.seconds, 1),
                            "steps_per_s": round(args.steps / run.seconds, 3),
                            "final_train_total": run.last["total"], "curve": run.curve,
                            "to_target": run.to_target}
    if len(runs) == 2:
        ratio = result["styler"]["content_plus_style"] / result["transformer_net"]["content_plus_style"]
        result["val_loss_ratio"] = ratio
        result["within_10_percent"] = bool(math.isfinite(ratio) and ratio <= 1.10)
    png = side_by_side(val.cpu(), [r.outputs.cpu() for r in runs], args.out / "side_by_side.png")  # type: ignore[attr-defined]
    result["side_by_side"] = str(png)
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

"""``styler train``: the training options and a fresh or resumed run's inputs (what it shows while it
trains: :mod:`styler.cli.train_progress`)."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import click

from styler.cli.common import common_options, device_option, handle_errors, once
from styler.config import HEAD_START, NO_INIT, OFFLINE_DEFAULTS, Features, GeneratorConfig, LossConfig, \
    Precision, Preprocess, StyleLoss, TrainConfig, Upsample, default_weights_dir, defaults_for

_TRAIN = TrainConfig()
_LOSS = LossConfig()


def _typed(config: Any, params: dict[str, Any], given: Callable[[str], bool]) -> dict[str, Any]:
    """The fields of the dataclass ``config`` the user typed (option names are field names),
    as the field's enum where it has one."""
    out = {}
    for f in dataclasses.fields(config):
        if f.name in params and given(f.name):
            default = getattr(config, f.name)
            out[f.name] = type(default)(params[f.name]) if isinstance(default, enum.Enum) else params[f.name]
    return out


def _train_config(ctx: click.Context, base: TrainConfig, params: dict[str, Any], weights_dir: Path) -> TrainConfig:
    """``base`` with the values the user typed applied (Click's own defaults equal TrainConfig's,
    so an untyped option keeps ``base``'s value: a resumed run's, or the loss network's recipe)."""
    from click.core import ParameterSource

    def given(key: str) -> bool:
        if params[key] is None:
            return False
        source = ctx.get_parameter_source(key)
        return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    generator = base.generator
    if given("init_from") and params["init_from"] != NO_INIT:
        from styler.io.weights import init_architecture

        # The new style starts from that generator, so it takes that architecture.
        generator = init_architecture(params["init_from"], weights_dir)
    discriminator = base.discriminator
    if given("d_channels"):
        discriminator = replace(discriminator, base_channels=params["d_channels"])
    return replace(base, **_typed(base, params, given), loss=replace(base.loss, **_typed(base.loss, params, given)),
                   generator=replace(generator, **_typed(generator, params, given)), discriminator=discriminator)


@click.command()
@click.option("--style", "style_path", type=click.Path(path_type=Path), multiple=True,
              callback=lambda ctx, param, value: once(param, value),
              help="The style painting (any image Pillow reads).")
@click.option("--content-dir", type=click.Path(path_type=Path),
              help="Folder of photos to train on (searched recursively).")
@click.option("--name", default="", help="Style name [default: the style file's stem].")
@click.option("--steps", type=int, default=_TRAIN.steps, show_default=True)
@click.option("--budget", default=None, metavar="DURATION",
              help="Train the best style this much wall time buys on this machine, setup included "
                   "(90s, 5m, 1h): measures a step, then picks the steps, crop and painting size. "
                   "Not with --steps.")
@click.option("--batch-size", type=int, default=_TRAIN.batch_size, show_default=True)
@click.option("--image-size", type=int, default=_TRAIN.image_size, show_default=True,
              help="Training crop size in pixels (a multiple of the generator stride, 2^--downsamples).")
@click.option("--style-size", type=int, default=_TRAIN.style_size, show_default=True,
              help="Longer side of the style image for the style targets.")
@click.option("--content-weight", type=float, default=_LOSS.content_weight, show_default=True)
@click.option("--style-weight", type=float, default=_LOSS.style_weight, show_default=True)
@click.option("--tv-weight", type=float, default=_LOSS.tv_weight,
              show_default=f"{_LOSS.tv_weight} (off); {OFFLINE_DEFAULTS.loss.tv_weight} with --features random",
              help="Total-variation weight: smooths high-frequency noise; 1 trims it, weights below about "
                   "0.1 hardly act beside the normalised content and style terms.")
@click.option("--adv-weight", type=float, default=_LOSS.adv_weight, show_default=True,
              help="PatchGAN adversarial weight; 0 disables the discriminator.")
@click.option("--temporal-weight", type=float, default=_LOSS.temporal_weight, show_default=True,
              help="Steady video: ask for the same strokes when the photo moves by a few pixels or gains "
                   "sensor noise (Gupta et al. 2017); 0 = off. The bundled -video styles use 10.")
@click.option("--temporal-noise", type=float, default=_LOSS.temporal_noise, show_default=True,
              help="Largest standard deviation of the noise the temporal loss adds (0-1 pixel scale).")
@click.option("--lr", type=float, default=_TRAIN.lr, show_default=True,
              help="Generator learning rate; cosine decay to 10% over --steps.")
@click.option("--features", type=click.Choice([f.value for f in Features]), default=_TRAIN.features.value,
              show_default=True, help="Loss network; 'random' needs no download but is weaker.")
@click.option("--style-loss", type=click.Choice([k.value for k in StyleLoss]), default=_LOSS.style_loss.value,
              show_default=f"{_LOSS.style_loss.value}; {OFFLINE_DEFAULTS.loss.style_loss.value} with --features random",
              help="Gram matrices (Gatys) or sliced Wasserstein (Heitz) feature matching.")
@click.option("--feature-width-divisor", type=int, default=_TRAIN.feature_width_divisor,
              show_default=f"{_TRAIN.feature_width_divisor}; "
                           f"{OFFLINE_DEFAULTS.feature_width_divisor} with --features random",
              help="With --features random: divide the loss network's widths by 2, 4 or 8 (faster).")
@click.option("--vgg-weights", type=click.Path(path_type=Path), default=None,
              help="A VGG-16/19 weights file you have: torchvision's or a Caffe-converted .pth, "
                   "Keras .h5, or an ONNX file holding a VGG trunk.")
@click.option("--vgg-preprocess", type=click.Choice([p.value for p in Preprocess]),
              default=_TRAIN.vgg_preprocess.value, show_default=True,
              help="Input convention of --vgg-weights: auto (from the file's source), torchvision "
                   "(RGB, ImageNet mean/std) or caffe (BGR, 0-255, mean subtracted).")
@click.option("--content-layer", default=_TRAIN.content_layer, metavar="LAYER",
              help="Loss-network layer of the content loss, e.g. relu3_3 [default: relu2_2 for vgg16, "
                   "relu3_1 for vgg19 and random].")
@click.option("--style-layers", default=",".join(_TRAIN.style_layers), metavar="LAYER,...",
              callback=lambda ctx, param, value: tuple(filter(None, (v.strip() for v in value.split(",")))),
              help="Comma-separated layers of the style loss, e.g. relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 "
                   "(Gatys et al.) [default: relu1_2..relu4_3 for vgg16 (Johnson et al.), relu1_1..relu4_1 "
                   "for vgg19 and random].")
@click.option("--seed", type=int, default=_TRAIN.seed, show_default=True)
@click.option("--workers", "num_workers", type=int, default=_TRAIN.num_workers, show_default=True,
              help="DataLoader worker processes decoding images.")
@click.option("--val-fraction", type=float, default=_TRAIN.val_fraction, show_default=True,
              help="Share of the photos held out for validation (4..64 photos, at most half; 0 = none).")
@click.option("--val-every", type=int, default=_TRAIN.val_every, show_default=True,
              help="Validate (and keep the best generator) every N steps and at the end.")
@click.option("--patience", type=int, default=_TRAIN.patience, show_default=True,
              help="Stop after N validations without improvement; 0 = never (the cosine schedule "
                   "does its best work at the end, and the best weights are kept anyway).")
@click.option("--checkpoint-every", type=int, default=_TRAIN.checkpoint_every, show_default=True,
              help="Write a resumable checkpoint every N steps (and on Ctrl-C).")
@click.option("--preview-every", type=int, default=_TRAIN.preview_every, show_default=True,
              help="Write a preview grid every N steps; 0 = never.")
@click.option("--log-every", type=int, default=_TRAIN.log_every, show_default=True,
              help="Append a line to metrics.jsonl every N steps.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for checkpoints, metrics and previews [default: runs/<name> in the data folder].")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[RUN_DIR]",
              help="Continue a checkpointed run: alone with the same options, or with its name or run folder; "
                   "with a larger --steps, train a finished run longer.")
@click.option("--force", is_flag=True,
              help="Resume despite changed options, or start over in a folder holding an unfinished run.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing style of the same name (or hide a bundled one) and a finished run.")
@click.option("--init-from", default=None, metavar="NAME_OR_FILE",
              help=f"Start from an existing style's generator, or '{NO_INIT}' to start from scratch "
                   f"[default: the painter's head start with VGG features, scratch with random ones].")
@click.option("--base-channels", type=int, default=None,
              help=f"Generator width [default: {GeneratorConfig().base_channels}, or --init-from's].")
@click.option("--residual-blocks", "num_residual", type=int, default=None,
              help=f"Generator depth [default: {GeneratorConfig().num_residual}, or --init-from's].")
@click.option("--downsamples", "num_downsamples", type=click.IntRange(1, 4), default=None,
              help=f"Halvings before the residual blocks: 2 = blocks at 1/4 (finer detail), 3 = at 1/8 "
                   f"(larger strokes, small detail lost, same FLOPs) [default: "
                   f"{GeneratorConfig().num_downsamples}, {OFFLINE_DEFAULTS.generator.num_downsamples} with "
                   f"--features random, or --init-from's].")
@click.option("--upsample", type=click.Choice([u.value for u in Upsample]), default=None,
              help=f"Decoder upsampling [default: {GeneratorConfig().upsample.value}, or --init-from's].")
@click.option("--d-channels", type=int, default=None,
              help=f"PatchGAN discriminator width, its first layer's channels [default: "
                   f"{_TRAIN.discriminator.base_channels}, {OFFLINE_DEFAULTS.discriminator.base_channels} with "
                   f"--features random].")
@click.option("--d-every", type=int, default=None,
              help=f"Update the discriminator on every Nth step; the adversarial term still shapes every "
                   f"generator step [default: {_TRAIN.d_every}, {OFFLINE_DEFAULTS.d_every} with --features random].")
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default=_TRAIN.precision.value,
              show_default=True, help="auto: bf16 where the hardware computes it (CUDA GPUs from Ampere, CPUs with AVX512-BF16 or AMX), fp32 elsewhere; fp16 needs CUDA (with loss scaling).")
@click.option("--compile", "compile", is_flag=True, help="torch.compile the generator and loss network.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Accept style paintings and photos up to this many pixels [default: Pillow's limit, "
                   "about 89 million]; larger ones are refused as possible decompression bombs.")
@device_option
@common_options
@click.pass_context
@handle_errors
def train(ctx: click.Context, style_path: Path | None, content_dir: Path | None, vgg_weights: Path | None,
          run_dir: Path | None, resume: str | None, force: bool, overwrite: bool, max_pixels: int | None,
          device: str, weights_dir: Path | None, as_json: bool, budget: str | None, **params: Any) -> None:
    """Train a generator for one style painting.

    \b
    Examples:
      styler train --style starry.png --content-dir photos/ --budget 5m
      styler train --style starry.png --content-dir photos/ --steps 4000
      styler train --style scream.jpg --content-dir photos/ \\
          --vgg-weights ~/vgg16-397923af.pth
      styler train --style starry.png --content-dir photos/ --features random
      styler train --resume starry                 # after Ctrl-C or a crash
      styler train --resume starry --steps 4000     # train longer
      styler train --style wave.jpg --content-dir photos/ --init-from none
      torchrun --nproc_per_node=4 -m styler train --style starry.png \\
          --content-dir photos/
    """
    import time

    started = time.perf_counter()
    from styler.cli.train_progress import run_training, setup_status
    from styler.training import distributed
    from styler.device import resolve_device
    from styler.io.images import max_image_pixels
    from styler.training.runs import default_run_dir
    from styler.training.trainer import Trainer

    budget_s = _budget_seconds(ctx, budget, resume)
    ctx.with_resource(max_image_pixels(max_pixels))  # Pillow's limit, restored when the command ends
    target = resolve_device(device)
    config, style_path, content_dir, vgg_weights, weights_dir, resumed_dir = _run_inputs(
        ctx, params, resume, style_path, content_dir, vgg_weights, weights_dir, budget_s, target)
    run_dir = run_dir or resumed_dir
    if not Path(style_path).is_file():
        raise click.BadParameter(f"no such file: {style_path}", param_hint="--style")
    run_dir = run_dir or default_run_dir(config.name)
    dist = distributed.from_env()
    try:
        # Build everything (data, loss network, style targets) before the bar, so a setup error
        # is one clean line rather than a line under a half-drawn progress bar.
        with setup_status(ctx.obj["quiet"] or as_json or not dist.is_main):
            trainer = Trainer(config, style_path, content_dir, weights_dir, distributed.setup(dist, target),
                              vgg_weights=vgg_weights, run_dir=run_dir, resume=resume is not None, force=force,
                              overwrite=overwrite, dist=dist, started=started)
        run_training(trainer, as_json, ctx.obj["quiet"] or not dist.is_main)
    finally:
        distributed.teardown()


def _budget_seconds(ctx: click.Context, budget: str | None, resume: str | None) -> float:
    """``--budget`` in seconds (0 without it); its conflicts said before any work starts."""
    from click.core import ParameterSource

    if budget is None:
        return 0.0
    if ctx.get_parameter_source("steps") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--budget picks the number of steps itself: give --budget or --steps, not both")
    if resume is not None:
        raise click.UsageError("--budget plans a new run; a resumed run keeps its own plan "
                               "(train a finished run longer with --resume RUN_DIR --steps N)")
    from styler.errors import ConfigError
    from styler.training.budget import parse_duration

    try:
        return parse_duration(budget)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget") from None


def _run_inputs(ctx: click.Context, params: dict[str, Any], resume: str | None, style_path: Path | None,
                content_dir: Path | None, vgg_weights: Path | None, weights_dir: Path | None, budget_s: float,
                device: Any) -> tuple[Any, ...]:
    """(config, style, content folder, VGG file, weights folder, run folder or None) of a fresh
    run, or of the run folder being resumed: its run.json supplies everything not typed again."""
    if resume:
        return _resumed_inputs(ctx, params, resume, style_path, content_dir, vgg_weights, weights_dir)
    if style_path is None or content_dir is None:
        raise click.UsageError("--style and --content-dir are required (unless --resume RUN_DIR)")
    weights_dir = weights_dir or default_weights_dir()
    params["name"] = params["name"] or Path(style_path).stem
    config = _train_config(ctx, _fresh_base(params, budget_s, device), params, weights_dir)
    _check_head_start(config)
    return config, style_path, content_dir, vgg_weights, weights_dir, None


def _resumed_inputs(ctx: click.Context, params: dict[str, Any], resume: str, style_path: Path | None,
                    content_dir: Path | None, vgg_weights: Path | None, weights_dir: Path | None) -> tuple[Any, ...]:
    """:func:`_run_inputs` of a run given by its name (in the data folder's runs) or its folder."""
    from styler.training.runs import RunDir, find_run_dir

    run_dir = find_run_dir(resume)
    spec = RunDir(run_dir).read_spec()
    weights_dir = weights_dir or spec.weights_dir
    return (_train_config(ctx, spec.config, params, weights_dir), style_path or spec.style,
            content_dir or spec.content_dir, vgg_weights or spec.vgg_weights, weights_dir, run_dir)


def _fresh_base(params: dict[str, Any], budget_s: float, device: Any) -> TrainConfig:
    """The defaults of the chosen loss network (--features random has its own recipe), with the
    machine's recipe for a budget; whatever the user typed still wins in _train_config."""
    base = replace(defaults_for(Features(params["features"])), name=params["name"])
    if not budget_s:
        return base
    from styler.training.budget import budgeted

    return budgeted(base, budget_s, device)


def _check_head_start(config: TrainConfig) -> None:
    """Generator options that the head start's architecture cannot take: said before any work."""
    if config.init_from != HEAD_START:
        return
    from styler.io.weights import init_architecture

    if init_architecture(HEAD_START) != config.generator:
        raise click.UsageError(f"the generator options ask for another architecture than the painter's head start "
                               f"has; add --init-from {NO_INIT} to train that architecture from scratch")

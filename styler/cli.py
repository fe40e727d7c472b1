"""Command-line interface: a thin Click layer over :mod:`styler.train` and :mod:`styler.apply`.

Only this module imports Click or prints. Library errors (:class:`StylerError`) become one
line on stderr and exit code 1; usage errors exit 2 (Click's convention).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from styler import __version__
from styler.config import ApplyConfig, DeviceChoice, ExportFormat, Features, FolderConfig, GeneratorConfig, \
    OFFLINE_DEFAULTS, LossConfig, OutputFormat, Precision, Preprocess, StyleLoss, TileStats, TrainConfig, Upsample, \
    default_weights_dir, defaults_for
from styler.errors import StylerError, WeightsError

_TRAIN = TrainConfig()
_LOSS = LossConfig()
_APPLY = ApplyConfig()
_FOLDER = FolderConfig()
log = logging.getLogger("styler")


def _console(stderr: bool = True):
    from rich.console import Console

    # rich honours NO_COLOR itself; we pass it explicitly so the behaviour is obvious.
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def _json_mode() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


def _fail(message: str, code: int = 1) -> None:
    """One line on stderr; with --json also ``{"error": ...}`` on stdout, so scripts that parse
    stdout always get an object."""
    click.echo(f"error: {message}", err=True)
    if _json_mode():
        _print_json({"error": message, "exit_code": code})
    sys.exit(code)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one clear line and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StylerError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except click.ClickException as exc:  # a usage error found inside the command
            if _json_mode():
                _print_json({"error": exc.format_message(), "exit_code": exc.exit_code})
            raise

    return wrapper


class _EchoHandler(logging.Handler):
    """Log records on stderr through Click (so tests' captured streams see them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _set_logging(quiet: bool, verbose: int) -> None:
    """-q shows errors only, -v setup steps with their times, -vv more. The logger passes
    everything on, so the setup status can show each step even when it is not printed."""
    logger = logging.getLogger("styler")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = next((h for h in logger.handlers if isinstance(h, _EchoHandler)), None)
    if handler is None:
        handler = _EchoHandler()
        logger.addHandler(handler)
    handler.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose > 1 else
                     logging.INFO if verbose else logging.WARNING)


def _global_after_command(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """-q and -v given after the command name (``styler apply x.jpg -q``) mean what they mean before it."""
    if not value:
        return
    obj = ctx.find_root().obj
    if param.name == "quiet":
        obj["quiet"] = True
    else:
        obj["verbose"] += value
    _set_logging(obj["quiet"], obj["verbose"])


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command shares, declared once."""
    decorators = [
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_global_after_command,
                     help="Only print errors (also accepted before the command)."),
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_global_after_command,
                     help="More detail, repeatable (also accepted before the command)."),
        click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None, envvar="STYLER_WEIGHTS_DIR", show_envvar=True,
                     help="Folder of style weights [default: ./weights]."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout for scripts."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--device", type=click.Choice([d.value for d in DeviceChoice]),
                        default=DeviceChoice.AUTO.value, show_default=True,
                        help="Compute device; auto picks CUDA, then MPS, then CPU.")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="styler")
@click.option("-q", "--quiet", is_flag=True, help="Only print errors.")
@click.option("-v", "--verbose", count=True, help="More detail (repeatable).")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: int) -> None:
    """styler: fast neural style transfer.

    \b
    Train a small generator once per painting, then stylize images in one pass:
      styler train --style starry.png --content-dir photos/
      styler apply photo.jpg --style starry
      styler apply photos/ --style starry -o out/
      styler styles
    """
    _set_logging(quiet, verbose)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


def _print_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, sort_keys=True, default=str))


# CLI parameter -> TrainConfig field (the loss and generator ones go to the nested configs).
_TRAIN_FIELDS = {"name": "name", "steps": "steps", "batch_size": "batch_size", "image_size": "image_size",
                 "style_size": "style_size", "lr": "lr", "features": "features", "seed": "seed",
                 "workers": "num_workers", "log_every": "log_every", "val_fraction": "val_fraction",
                 "val_every": "val_every", "patience": "patience", "checkpoint_every": "checkpoint_every",
                 "preview_every": "preview_every", "precision": "precision", "compile": "compile",
                 "init_from": "init_from", "feature_width_divisor": "feature_width_divisor",
                 "vgg_preprocess": "vgg_preprocess"}
_LOSS_FIELDS = ("content_weight", "style_weight", "tv_weight", "adv_weight", "style_loss")
_GENERATOR_FIELDS = {"base_channels": "base_channels", "residual_blocks": "num_residual", "upsample": "upsample"}


def _train_config(ctx: click.Context, base: TrainConfig, params: dict[str, Any], weights_dir: Path) -> TrainConfig:
    """``base`` with the values the user typed applied (Click's own defaults equal TrainConfig's,
    so an untyped option keeps ``base``'s value: a resumed run's, or the loss network's recipe)."""
    from click.core import ParameterSource

    def given(key: str) -> bool:
        if params[key] is None:
            return False
        source = ctx.get_parameter_source(key)
        return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    enums = {"features": Features, "precision": Precision, "vgg_preprocess": Preprocess}
    top = {field: enums[key](params[key]) if key in enums else params[key]
           for key, field in _TRAIN_FIELDS.items() if given(key)}
    loss = replace(base.loss, **{key: StyleLoss(params[key]) if key == "style_loss" else params[key]
                                 for key in _LOSS_FIELDS if given(key)})
    generator = base.generator
    if given("init_from"):
        from styler.train import init_architecture

        # The new style starts from that generator, so it takes that architecture.
        generator = init_architecture(params["init_from"], weights_dir)
    generator = replace(generator, **{field: Upsample(params[key]) if key == "upsample" else params[key]
                                      for key, field in _GENERATOR_FIELDS.items() if given(key)})
    return replace(base, **top, loss=loss, generator=generator)


@main.command()
@click.option("--style", "style_path", type=click.Path(path_type=Path), multiple=True,
              callback=lambda ctx, param, value: _once(param, value),
              help="The style painting (any image Pillow reads).")
@click.option("--content-dir", type=click.Path(path_type=Path),
              help="Folder of photos to train on (searched recursively).")
@click.option("--name", default="", help="Style name [default: the style file's stem].")
@click.option("--steps", type=int, default=_TRAIN.steps, show_default=True)
@click.option("--batch-size", type=int, default=_TRAIN.batch_size, show_default=True)
@click.option("--image-size", type=int, default=_TRAIN.image_size, show_default=True,
              help="Training crop size in pixels (a multiple of 8).")
@click.option("--style-size", type=int, default=_TRAIN.style_size, show_default=True,
              help="Longer side of the style image for the style targets.")
@click.option("--content-weight", type=float, default=_LOSS.content_weight, show_default=True)
@click.option("--style-weight", type=float, default=_LOSS.style_weight, show_default=True)
@click.option("--tv-weight", type=float, default=_LOSS.tv_weight,
              show_default=f"{_LOSS.tv_weight}, effectively off; {OFFLINE_DEFAULTS.loss.tv_weight} with --features "
                           f"random",
              help="Total-variation weight: smooths high-frequency noise. The default is too small to act "
                   "beside the normalised content and style terms; 1 trims noise.")
@click.option("--adv-weight", type=float, default=_LOSS.adv_weight, show_default=True,
              help="PatchGAN adversarial weight; 0 disables the discriminator.")
@click.option("--lr", type=float, default=_TRAIN.lr, show_default=True,
              help="Generator learning rate; cosine decay to 10% over --steps.")
@click.option("--features", type=click.Choice([f.value for f in Features]), default=_TRAIN.features.value,
              show_default=True, help="Loss network; 'random' needs no download but is weaker.")
@click.option("--style-loss", type=click.Choice([k.value for k in StyleLoss]), default=_LOSS.style_loss.value,
              show_default=f"{_LOSS.style_loss.value}; {OFFLINE_DEFAULTS.loss.style_loss.value} with --features random",
              help="Gram matrices (Gatys) or sliced Wasserstein (Heitz) feature matching.")
@click.option("--feature-width-divisor", type=int, default=_TRAIN.feature_width_divisor,
              show_default=f"{_TRAIN.feature_width_divisor}; {OFFLINE_DEFAULTS.feature_width_divisor} with --features random",
              help="With --features random: divide the loss network's widths by 2, 4 or 8 (faster).")
@click.option("--vgg-weights", type=click.Path(path_type=Path), default=None,
              help="A VGG-16/19 weights file you have: torchvision's or a Caffe-converted .pth, "
                   "Keras .h5, or an ONNX file holding a VGG trunk.")
@click.option("--vgg-preprocess", type=click.Choice([p.value for p in Preprocess]),
              default=_TRAIN.vgg_preprocess.value, show_default=True,
              help="Input convention of --vgg-weights: auto (from the file's source), torchvision "
                   "(RGB, ImageNet mean/std) or caffe (BGR, 0-255, mean subtracted).")
@click.option("--seed", type=int, default=_TRAIN.seed, show_default=True)
@click.option("--workers", type=int, default=_TRAIN.num_workers, show_default=True,
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
              help="Folder for checkpoints, metrics and previews [default: ./runs/<name>].")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[RUN_DIR]",
              help="Continue a checkpointed run: alone with the same options, or with its run folder; "
                   "with a larger --steps, train a finished run longer.")
@click.option("--force", is_flag=True,
              help="Resume despite changed options, or start over in a folder holding an unfinished run.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing style of the same name (or hide a bundled one) and a finished run.")
@click.option("--init-from", default=None, metavar="NAME_OR_FILE",
              help="Start from an existing style's generator (transfer learning).")
@click.option("--base-channels", type=int, default=None,
              help=f"Generator width [default: {GeneratorConfig().base_channels}, or --init-from's].")
@click.option("--residual-blocks", type=int, default=None,
              help=f"Generator depth [default: {GeneratorConfig().num_residual}, or --init-from's].")
@click.option("--upsample", type=click.Choice([u.value for u in Upsample]), default=None,
              help=f"Decoder upsampling [default: {GeneratorConfig().upsample.value}, or --init-from's].")
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default=_TRAIN.precision.value,
              show_default=True, help="CUDA arithmetic (fp16 uses loss scaling); the CPU trains in fp32.")
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
          device: str, weights_dir: Path | None, as_json: bool, **params: Any) -> None:
    """Train a generator for one style painting.

    \b
    Examples:
      styler train --style starry.png --content-dir photos/
      styler train --style starry.png --content-dir photos/ --steps 4000 --name starry
      styler train --style scream.jpg --content-dir photos/ --vgg-weights ~/vgg16-397923af.pth
      styler train --style starry.png --content-dir photos/ --features random   # offline
      styler train --resume runs/starry                     # continue after Ctrl-C or a crash
      styler train --resume runs/starry --steps 4000        # train a finished run longer
      styler train --style wave.jpg --content-dir photos/ --init-from starry
      torchrun --nproc_per_node=4 -m styler train --style starry.png --content-dir photos/
    """
    from styler import distributed
    from styler.device import resolve_device
    from styler.pipeline import set_max_pixels
    from styler.runs import RunDir, default_run_dir
    from styler.train import Trainer

    set_max_pixels(max_pixels)

    if resume:  # a run folder: its run.json supplies everything not typed again
        spec = RunDir(Path(resume)).read_spec()
        run_dir, weights_dir = Path(resume), weights_dir or spec.weights_dir
        style_path, content_dir = style_path or spec.style, content_dir or spec.content_dir
        vgg_weights = vgg_weights or spec.vgg_weights
        config = _train_config(ctx, spec.config, params, weights_dir)
    else:
        if style_path is None or content_dir is None:
            raise click.UsageError("--style and --content-dir are required (unless --resume RUN_DIR)")
        weights_dir = weights_dir or default_weights_dir()
        params["name"] = params["name"] or Path(style_path).stem
        # Start from the defaults of the chosen loss network (--features random has its own recipe).
        base = replace(defaults_for(Features(params["features"])), name=params["name"])
        config = _train_config(ctx, base, params, weights_dir)
    if not Path(style_path).is_file():
        raise click.BadParameter(f"no such file: {style_path}", param_hint="--style")
    run_dir = run_dir or default_run_dir(config.name)
    dist = distributed.from_env()
    try:
        # Build everything (data, loss network, style targets) before the bar, so a setup error
        # is one clean line rather than a line under a half-drawn progress bar.
        with _setup_status(ctx.obj["quiet"] or as_json or not dist.is_main):
            trainer = Trainer(config, style_path, content_dir, weights_dir,
                              distributed.setup(dist, resolve_device(device)), vgg_weights=vgg_weights,
                              run_dir=run_dir, resume=resume is not None, force=force, overwrite=overwrite, dist=dist)
        _run_training(trainer, as_json, ctx.obj["quiet"] or not dist.is_main)
    finally:
        distributed.teardown()


@contextlib.contextmanager
def _setup_status(quiet: bool) -> Iterator[None]:
    """A spinner naming each setup step (scanning photos, loss network, style targets), which
    take tens of seconds before the first step. Only on a terminal: a log file gets -v's lines."""
    console = _console()
    if quiet or not console.is_terminal:
        yield
        return

    class Follow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            status.update(f"preparing training: {record.getMessage()}")

    handler = Follow()
    with console.status("preparing training") as status:
        logging.getLogger("styler").addHandler(handler)
        try:
            yield
        finally:
            logging.getLogger("styler").removeHandler(handler)


def _run_training(trainer: Any, as_json: bool, quiet: bool) -> None:
    config = trainer.config
    try:
        with _progress(config.steps, "training", quiet) as advance:
            advance(trainer.step, "resumed" if trainer.step else "")

            def on_step(report) -> None:
                shown = {k: f"{v:.3g}" for k, v in report.losses.items()
                         if k in ("total", "content", "style", "adv", "d")}
                if trainer.best.loss is not None:
                    shown["val"] = f"{trainer.best.loss:.3g}"
                advance(report.step, " ".join(f"{k}={v}" for k, v in shown.items())
                        + f" {report.steps_per_s:.2f} it/s")

            result = trainer.run(on_step)
    except KeyboardInterrupt:
        if not trainer.dist.is_main:
            raise
        # After the bar has closed, so the hint is the last line the user sees.
        if not trainer.checkpoint_step:
            _fail(f"interrupted at step {trainer.step} before the first checkpoint; nothing to resume", 130)
        saved = ("checkpoint saved" if trainer.checkpoint_step == trainer.step
                 else f"last checkpoint at step {trainer.checkpoint_step}")
        _fail(f"interrupted at step {trainer.step}; {saved}, resume with: "
              f"styler train --resume {trainer.run_dir.path}", 130)
    if not trainer.dist.is_main:
        return
    summary = {"weights": str(result.weights_path.absolute()), "steps": result.steps,
               "seconds": round(result.seconds, 1), "losses": result.losses,
               "skipped_images": [str(Path(p).absolute()) for p in result.skipped_images],
               "features": config.features.value, "best_step": result.best_step, "val_loss": result.val_loss,
               "stopped_early": result.stopped_early, "run_dir": str(Path(result.run_dir).absolute())}
    if as_json:
        _print_json(summary)
    elif not quiet:
        extra = f", skipped {len(result.skipped_images)} unreadable image(s)" if result.skipped_images else ""
        best = (f"; best validation loss {result.val_loss:.4g} at step {result.best_step}"
                if result.best_step is not None else "")
        stop = " (stopped early: no improvement)" if result.stopped_early else ""
        click.echo(f"saved {result.weights_path} after {result.steps} steps in {result.seconds:.0f}s{stop}{extra}"
                   f"{best}; run folder {result.run_dir}")


class _progress:
    """A rich progress bar (step, description, rate, ETA); silent when quiet.

    When stderr is not a terminal (a log file, CI, nohup) a live bar would show nothing until
    the end, so a plain line is printed about every 5% instead."""

    def __init__(self, total: int, label: str, quiet: bool) -> None:
        self.total, self.label, self.quiet = total, label, quiet

    def _plain(self) -> Callable[[int, str], None]:
        import time

        start, every, last = time.monotonic(), max(1, self.total // 20), [0]

        def update(completed: int, text: str = "") -> None:
            if completed - last[0] < every and completed < self.total:
                return
            last[0] = completed
            elapsed = time.monotonic() - start
            eta = elapsed / max(completed, 1) * (self.total - completed)
            click.echo(f"{self.label} {completed}/{self.total} elapsed {elapsed:.0f}s eta {eta:.0f}s {text}",
                       err=True)

        return update

    def __enter__(self) -> Callable[[int, str], None]:
        self.bar = None
        if self.quiet:
            return lambda completed, text="": None
        if not _console().is_terminal:
            return self._plain()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                            console=_console())
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total, info="")
        return lambda completed, text="": self.bar.update(task, completed=completed, info=text)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _apply_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Per-image inference options, shared by ``apply`` and ``sheet``."""
    decorators = [
        click.option("--strength", type=float, default=_APPLY.strength, show_default=True,
                     help="0 returns the input, 1 the full style."),
        click.option("--preserve-color", is_flag=True,
                     help="Keep the photo's colours; take only the style's luminance."),
        click.option("--tile", type=int, default=None,
                     help="Stylize in tiles of this many pixels a side (a multiple of 8, >= 64) to bound memory."),
        click.option("--max-tile-pixels", type=int, default=_APPLY.max_tile_pixels, show_default=True,
                     help="Tile images with more pixels than this automatically; 0 never tiles by itself."),
        click.option("--tile-stats", type=click.Choice([t.value for t in TileStats]), default=_APPLY.tile_stats.value,
                     show_default=True, help="Tiles' normalisation statistics: exact (whole image, full "
                     "resolution; output equals the untiled pass) or downscaled (from a --stats-size copy; faster)."),
        click.option("--stats-size", type=int, default=_APPLY.stats_size, show_default=True,
                     help="Longer side of the downscaled copy that gives tiles their statistics "
                     "(--tile-stats downscaled)."),
        click.option("--precision", type=click.Choice([p.value for p in Precision]), default=_APPLY.precision.value,
                     show_default=True, help="auto: bf16 on CUDA, fp32 elsewhere; fp16 needs CUDA."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _apply_config(strength: float, preserve_color: bool, tile: int | None, max_tile_pixels: int, tile_stats: str,
                  stats_size: int, precision: str, max_size: int | None = None) -> ApplyConfig:
    return ApplyConfig(max_size=max_size, strength=strength, preserve_color=preserve_color, tile=tile,
                       max_tile_pixels=max_tile_pixels, tile_stats=TileStats(tile_stats), stats_size=stats_size,
                       precision=Precision(precision))


def _once(param: click.Parameter, values: tuple[str, ...]) -> str | None:
    """A value for an option that may be given once (Click would silently keep the last)."""
    if len(values) > 1:
        raise click.BadParameter(f"given {len(values)} times ({', '.join(values)}); give it once", param=param)
    return values[0] if values else None


def _jpeg(value: str) -> str:
    value = value.lower()
    return "jpg" if value == "jpeg" else value


def _report_apply(summary: Any, skipped: list[tuple[Path, Path]], seconds_label: str, as_json: bool,
                  quiet: bool) -> None:
    for src, reason in summary.failed:
        click.echo(f"failed: {src}: {reason}" if not reason.startswith(str(src)) else f"failed: {reason}", err=True)
    if as_json:
        def pair(src: Path, dst: Path) -> dict[str, str]:
            return {"input": str(Path(src).absolute()), "output": str(Path(dst).absolute())}

        _print_json({"done": len(summary.done), "failed": len(summary.failed), "skipped": len(skipped),
                     "seconds": round(summary.seconds, 3), "images_per_s": round(summary.images_per_s, 3),
                     "outputs": [pair(s, d) for s, d in sorted(summary.pairs)],
                     "skipped_outputs": [pair(s, d) for s, d in skipped],
                     "failures": [{"input": str(Path(s).absolute()), "reason": r} for s, r in summary.failed]})
        return
    if quiet:
        return
    if len(summary.done) == 1 and not summary.failed and not skipped:
        click.echo(f"wrote {summary.done[0]}")
        return
    existing = f", skipped {len(skipped)} existing (--overwrite to redo)" if skipped else ""
    # A rate needs at least two images to mean anything.
    rate = f", {summary.images_per_s:.2f} images/s" if len(summary.done) > 1 else ""
    click.echo(f"done {len(summary.done)}, failed {len(summary.failed)}{existing}, {summary.seconds:.1f}s"
               f"{rate}{seconds_label}")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--style", required=True, multiple=True, callback=lambda ctx, param, value: _once(param, value),
              help="Style name (yours, else a bundled one), or a .safetensors path.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Output file (one image) or folder (several inputs, or a trailing slash).")
@_apply_options
@click.option("--max-size", type=int, default=None, help="Downscale so the longer side is at most this.")
@click.option("--recursive/--no-recursive", default=_FOLDER.recursive, show_default=True,
              help="Search folders (and ** in patterns) recursively.")
@click.option("--overwrite/--skip-existing", default=_FOLDER.overwrite, show_default=True,
              help="Redo outputs that already exist, or skip them (resumes an interrupted run).")
@click.option("--format", "fmt", type=click.Choice([*(f.value for f in OutputFormat), "jpeg"], case_sensitive=False),
              default=_FOLDER.format.value, show_default=True, callback=lambda ctx, param, value: _jpeg(value),
              help="Output format; 'same' keeps each input's extension.")
@click.option("--quality", type=int, default=_FOLDER.quality, show_default=True, help="JPEG/WebP quality 1..100.")
@click.option("--batch-size", type=int, default=_FOLDER.batch_size, show_default=True,
              help="Images of the same size stylized together.")
@click.option("--workers", type=int, default=_FOLDER.workers, show_default=True,
              help="Decoding threads (and as many encoding threads).")
@click.option("--shard", default=None, metavar="K/N",
              help="Process only slice K of N (K from 0); under torchrun RANK/WORLD_SIZE are used.")
@click.option("--max-pixels", type=int, default=None,
              help="Refuse images with more pixels than this [default: Pillow's limit, about 89 million].")
@device_option
@common_options
@click.pass_context
@handle_errors
def apply(ctx: click.Context, inputs: tuple[Path, ...], style: str, output: str | None, strength: float,
          preserve_color: bool, tile: int | None, max_tile_pixels: int, tile_stats: str, stats_size: int,
          precision: str, max_size: int | None,
          recursive: bool, overwrite: bool, fmt: str, quality: int, batch_size: int, workers: int,
          shard: str | None, max_pixels: int | None, device: str, weights_dir: Path | None, as_json: bool) -> None:
    """Stylize images, folders or glob patterns in a single pass.

    \b
    Examples:
      styler apply photo.jpg --style starry                 # writes photo_starry.jpg
      styler apply photo.jpg --style starry -o art.png
      styler apply photos/ --style starry -o out/           # mirrors the folder tree
      styler apply "photos/**/*.jpg" --style starry -o out/ --format webp --quality 90
      styler apply huge.tif --style starry --tile 1024      # bounded memory, same result
      styler apply huge.tif --style starry --tile 1024 --tile-stats downscaled  # faster, approximate
      styler apply photos/ --style starry -o out/ --shard 0/4
      styler apply photo.jpg --style weights/mine.safetensors --strength 0.6 --preserve-color
    """
    from styler.apply import Stylizer
    from styler.pipeline import ApplySummary, apply_to_paths
    from styler.planning import parse_shard, plan_outputs, shard_from_env, split_existing, take_shard

    config = _apply_config(strength, preserve_color, tile, max_tile_pixels, tile_stats, stats_size, precision,
                           max_size)
    folder = FolderConfig(recursive=recursive, overwrite=overwrite, format=OutputFormat(fmt), quality=quality,
                          batch_size=batch_size, workers=workers, max_pixels=max_pixels,
                          shard=parse_shard(shard) if shard else shard_from_env())
    stylizer = Stylizer.load(style, weights_dir=weights_dir, device=device, config=config)
    planned, failed = plan_outputs(inputs, output, stylizer.name, folder)
    pairs, skipped = split_existing(take_shard(planned, folder.shard, inputs), folder.overwrite)
    quiet = ctx.obj["quiet"] or len(pairs) <= 1
    summary = ApplySummary()
    if pairs:
        with _progress(len(pairs), f"stylizing with {stylizer.name}", quiet) as advance:
            start, count = time.perf_counter(), iter(range(1, len(pairs) + 1))

            def on_image(src: Path, error: str | None) -> None:
                n = next(count)
                advance(n, f"{n / max(time.perf_counter() - start, 1e-9):.2f} images/s")

            summary = apply_to_paths(stylizer, pairs, folder, on_image)
    summary.failed[:0] = failed
    summary.skipped = [dst for _, dst in skipped]
    if not planned and not failed:  # an empty shard of a non-empty run is fine (torchrun ranks)
        _fail("no images found in the given inputs")
    label = f" (shard {folder.shard[0]}/{folder.shard[1]})" if folder.shard else ""
    _report_apply(summary, skipped, label, as_json, ctx.obj["quiet"])
    if summary.failed:
        sys.exit(1)


@main.command()
@click.argument("style")
@click.option("--format", "fmt", type=click.Choice([f.value for f in ExportFormat]), default="onnx",
              show_default=True)
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Output file, or a folder (existing, or with a trailing slash) [default: <style>.onnx or "
                   "<style>.pt].")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset version.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@common_options
@handle_errors
def export(style: str, fmt: str, output: str | None, opset: int, overwrite: bool, weights_dir: Path | None,
           as_json: bool) -> None:
    """Export a style's generator to ONNX or TorchScript (dynamic batch, height and width).

    \b
    Input 'image' is (N, 3, H, W) RGB in [0, 1]; output 'stylized' has the same shape (clamp it).
    Examples:
      styler export starry                                  # writes starry.onnx
      styler export starry --format torchscript -o starry.pt
      styler export starry -o models/                       # writes models/starry.onnx
    """
    from styler.checkpoint import load_generator, resolve_weights
    from styler.export import export_generator

    generator, info = load_generator(resolve_weights(style, weights_dir), "cpu")
    kind = ExportFormat(fmt)
    name = Path(f"{info.path.stem}.{'onnx' if kind is ExportFormat.ONNX else 'pt'}")
    if output is None:
        target = name
    elif output.endswith(("/", os.sep)) or Path(output).is_dir():
        target = Path(output) / name
    else:
        target = Path(output)
    if target.exists() and not overwrite:
        raise StylerError(f"{target} already exists; pass --overwrite to replace it")
    path = export_generator(generator, target, kind, opset)
    if as_json:
        _print_json({"output": str(path.resolve()), "format": kind.value, "style": info.name})
    else:
        click.echo(f"wrote {path}")


@main.command()
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("sheet.png"),
              show_default=True)
@click.option("--size", type=click.IntRange(16, 4096), default=320, show_default=True,
              help="Longer side of each stylized copy.")
@click.option("--columns", type=click.IntRange(1, 64), default=None, help="Images per row [default: about square].")
@_apply_options
@device_option
@common_options
@handle_errors
def sheet(image: Path, output: Path, size: int, columns: int | None, strength: float, preserve_color: bool,
          tile: int | None, max_tile_pixels: int, tile_stats: str, stats_size: int, precision: str, device: str,
          weights_dir: Path | None, as_json: bool) -> None:
    """Render one image in every style of the weights folder, labelled, to pick one by eye.

    \b
    Examples:
      styler sheet photo.jpg -o sheet.png
      styler sheet photo.jpg --size 512 --columns 4 --weights-dir ~/styles
    """
    from styler.device import resolve_device
    from styler.images import open_image, save_image
    from styler.sheet import render_sheet, stylize_all

    directory = weights_dir or default_weights_dir()
    config = _apply_config(strength, preserve_color, tile, max_tile_pixels, tile_stats, stats_size, precision)
    entries, failures = stylize_all(open_image(image), directory, resolve_device(device), size, config)
    for name, reason in failures:
        click.echo(f"skipped style {name}: {reason}", err=True)
    if len(entries) == 1:
        raise WeightsError(f"no usable styles in {directory}; train one with 'styler train'")
    save_image(render_sheet(entries, columns), output)
    if as_json:
        _print_json({"output": str(output.absolute()), "styles": [label for label, _ in entries[1:]],
                     "failures": [{"style": n, "reason": r} for n, r in failures]})
    else:
        click.echo(f"wrote {output} with {len(entries) - 1} style(s)")


@main.command()
@common_options
@handle_errors
def styles(weights_dir: Path | None, as_json: bool) -> None:
    """List your styles (the weights folder) and the bundled ones.

    \b
    Examples:
      styler styles
      STYLER_WEIGHTS_DIR=~/styles styler styles --json
    """
    from styler.checkpoint import bundled_dir, list_styles

    directory = weights_dir or default_weights_dir()
    found = list_styles(directory)
    hidden = {style.name for style in found if style.shadowed}
    rows = [_style_row(style, style.name in hidden) for style in found]
    if as_json:
        _print_json({"weights_dir": str(directory.resolve()), "bundled_dir": str(bundled_dir()), "styles": rows})
        return
    if not rows:
        click.echo(f"no styles in {directory}; train one with 'styler train'")
        return
    from rich.table import Table

    table = Table(title=f"styles: yours in {directory}, and bundled")
    for column in ("name", "source", "features", "steps (best)", "image size", "created"):
        table.add_column(column)
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], row["source"], f"[red]unreadable: {row['error']}[/red]", "", "", "")
        else:
            best = f" ({row['best_step']})" if row["best_step"] is not None else ""
            table.add_row(row["name"], row["source"], row["features_source"] or row["features"],
                          f"{row['steps_trained']}{best}",
                          str(row["image_size"]), row["created"])
    _console(stderr=False).print(table)


def _style_row(style: Any, hides_bundled: bool) -> dict[str, Any]:
    """One ``styles`` row: where the style comes from, how it was trained, or why it is unreadable."""
    from styler.checkpoint import short_reason

    source = "bundled" if style.bundled else "yours"
    if style.shadowed:
        source = "bundled, hidden by yours"
    elif hides_bundled and not style.bundled:
        source = "yours, hides bundled"
    row: dict[str, Any] = {"name": style.name, "source": source, "bundled": style.bundled,
                           "shadowed": style.shadowed, "path": str(style.path.resolve())}
    if style.error is not None:
        return {**row, "error": short_reason(style.error, style.path)}
    meta = style.info.metadata
    return {**row, "features": style.info.features, "features_source": meta.get("features_source"),
            # Files from before steps_trained recorded the last step as "steps".
            "steps_trained": meta.get("steps_trained", meta.get("steps", "?")), "best_step": meta.get("best_step"),
            "image_size": meta.get("image_size", "?"), "created": meta.get("created_utc", "?")}

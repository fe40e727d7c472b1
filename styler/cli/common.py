"""The option set and output helpers every command shares: one-line errors, JSON, progress.

Only the CLI imports Click or prints. Library errors (:class:`StylerError`) become one line on
stderr and exit code 1; usage errors exit 2 (Click's convention). Library messages name their
arguments (``tile=512``); :func:`cli_words` turns those of the running command into its flags
(``--tile 512``). On a terminal, messages wrap at word boundaries instead of being cut mid-word.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from styler.config import ApplyConfig, DeviceChoice, Precision, TileStats
from styler.errors import StylerError

_APPLY = ApplyConfig()


def console(stderr: bool = True):
    from rich.console import Console

    # rich honours NO_COLOR itself; we pass it explicitly so the behaviour is obvious.
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def json_mode() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


# ``name=value`` in a library message: an argument with its value (quoted, or up to a space,
# a comma, a semicolon, a colon or a closing parenthesis).
_ARGUMENT = re.compile(r"\b([a-z][a-z_]*)=('[^']*'|\S+?)(?=[\s,;:)]|$)")


def cli_words(message: str) -> str:
    """``message`` with each ``name=value`` that names an option of the running command as the
    user types it: ``tile=512`` -> ``--tile 512``, ``overwrite=True`` -> ``--overwrite``."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return message
    options = {p.name: p for p in ctx.command.params if isinstance(p, click.Option) and p.name}

    def flag(found: re.Match[str]) -> str:
        option, value = options.get(found[1]), found[2].strip("'")
        if option is None:
            return found[0]
        if option.is_flag and value in ("True", "False"):
            names = option.opts if value == "True" else option.secondary_opts
            return names[0] if names else found[0]
        return f"{option.opts[0]} {value}"

    return _ARGUMENT.sub(flag, message)


def echo(message: str, err: bool = False) -> None:
    """Print ``message``; on a terminal wrapped at word boundaries to its width (a terminal
    wraps mid-word), elsewhere (a log, a pipe) whole, one line per line."""
    if (sys.stderr if err else sys.stdout).isatty():
        width = shutil.get_terminal_size().columns
        message = "\n".join(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False,
                                           subsequent_indent="  ") for line in message.splitlines())
    click.echo(message, err=err)


def fail(message: str, code: int = 1) -> None:
    """One line on stderr (wrapped on a terminal); with --json also ``{"error": ...}`` on stdout,
    so scripts that parse stdout always get an object."""
    message = cli_words(message)
    echo(f"error: {message}", err=True)
    if json_mode():
        print_json({"error": message, "exit_code": code})
    sys.exit(code)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one clear line and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StylerError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except click.ClickException as exc:  # a usage error found inside the command
            if json_mode():
                print_json({"error": exc.format_message(), "exit_code": exc.exit_code})
            raise

    return wrapper


class _EchoHandler(logging.Handler):
    """Log records on stderr through Click (so tests' captured streams see them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def set_logging(quiet: bool, verbose: int) -> None:
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
    set_logging(obj["quiet"], obj["verbose"])


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command shares, declared once."""
    decorators = [
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_global_after_command,
                     help="Only print errors (also accepted before the command)."),
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_global_after_command,
                     help="More detail, repeatable (also accepted before the command)."),
        click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None, envvar="STYLER_WEIGHTS_DIR", show_envvar=True,
                     help="Folder of your styles, where training writes [default: weights/ in styler's data "
                          "folder, which 'styler styles' shows]; ./weights and the bundled styles are read too."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout for scripts."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--device", type=click.Choice([d.value for d in DeviceChoice]),
                        default=DeviceChoice.AUTO.value, show_default=True,
                        help="Compute device; auto picks CUDA, then MPS, then CPU.")(func)


def once(param: click.Parameter, values: tuple[str, ...]) -> str | None:
    """A value for an option that may be given once (Click would silently keep the last)."""
    if len(values) > 1:
        raise click.BadParameter(f"given {len(values)} times ({', '.join(values)}); give it once", param=param)
    return values[0] if values else None


def print_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, sort_keys=True, default=str))


class progress:
    """A rich progress bar (count, description, rate, ETA); silent when quiet. ``completed`` may
    be fractional (a stage of an image), so the bar moves within one long item.

    When stderr is not a terminal (a log file, CI, nohup) a live bar would show nothing until
    the end, so a plain line is printed about every 5% instead; with ``live_only`` (one image:
    a few lines would say nothing) nothing is, and the live bar goes away when done."""

    def __init__(self, total: int, label: str, quiet: bool, live_only: bool = False) -> None:
        self.total, self.label, self.quiet, self.live_only = total, label, quiet, live_only

    def _plain(self) -> Callable[[float, str], None]:
        import time

        start, every, last = time.monotonic(), max(1, self.total // 20), [0]

        def update(completed: float, text: str = "") -> None:
            whole = int(completed)
            if whole - last[0] < every and whole < self.total or whole == last[0]:
                return
            last[0] = whole
            elapsed = time.monotonic() - start
            eta = elapsed / max(completed, 1e-9) * (self.total - completed)
            click.echo(f"{self.label} {whole}/{self.total} elapsed {elapsed:.0f}s eta {eta:.0f}s {text}", err=True)

        return update

    def __enter__(self) -> Callable[[float, str], None]:
        self.bar = None
        terminal = console().is_terminal
        if self.quiet or (self.live_only and not terminal):
            return lambda completed, text="": None
        if not terminal:
            return self._plain()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                            console=console(), transient=self.live_only)
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total, info="")
        return lambda completed, text="": self.bar.update(task, completed=completed, info=text)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@contextlib.contextmanager
def image_progress(total: int, label: str, quiet: bool) -> Iterator[Callable[[Path, "str | None"], None]]:
    """A progress bar of files with their rate; yields the ``on_image(src, error)`` that advances it."""
    import time

    with progress(total, label, quiet) as advance:
        start, count = time.perf_counter(), iter(range(1, total + 1))

        def on_image(src: Path, error: str | None) -> None:
            n = next(count)
            advance(n, f"{n / max(time.perf_counter() - start, 1e-9):.2f} images/s")

        yield on_image


def apply_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Per-image inference options, shared by ``apply`` and ``sheet``."""
    decorators = [
        click.option("--strength", type=float, default=_APPLY.strength, show_default=True,
                     help="0 returns the input, 1 the full style."),
        click.option("--preserve-color", is_flag=True,
                     help="Keep the photo's colours; take only the style's luminance."),
        click.option("--tile", type=int, default=None,
                     help="Stylize in tiles of this many pixels a side to bound memory: at least 64 and a "
                     "multiple of the style's stride (4 for starry and shipwreck, 8 for matisse; a "
                     "multiple of 16 fits every style)."),
        click.option("--max-tile-pixels", type=int, default=_APPLY.max_tile_pixels, show_default=True,
                     help="Tile images with more pixels than this automatically; 0 never tiles by itself."),
        click.option("--tile-stats", type=click.Choice([t.value for t in TileStats]), default=_APPLY.tile_stats.value,
                     show_default=True, help="Tiles' normalisation statistics: exact (whole image, full "
                     "resolution; output equals the untiled pass) or downscaled (from a --stats-size copy; faster)."),
        click.option("--stats-size", type=int, default=_APPLY.stats_size, show_default=True,
                     help="Longer side of the downscaled copy that gives tiles their statistics "
                     "(--tile-stats downscaled)."),
        click.option("--precision", type=click.Choice([p.value for p in Precision]), default=_APPLY.precision.value,
                     show_default=True, help="auto: bf16 where it is faster (CUDA GPUs from Ampere, CPUs with AMX), fp32 elsewhere; fp16 needs CUDA."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def apply_config(strength: float, preserve_color: bool, tile: int | None, max_tile_pixels: int, tile_stats: str,
                 stats_size: int, precision: str, max_size: int | None = None) -> ApplyConfig:
    return ApplyConfig(max_size=max_size, strength=strength, preserve_color=preserve_color, tile=tile,
                       max_tile_pixels=max_tile_pixels, tile_stats=TileStats(tile_stats), stats_size=stats_size,
                       precision=Precision(precision))

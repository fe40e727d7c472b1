"""The ``styler`` command group; each command lives in its own module of :mod:`styler.cli`."""

from __future__ import annotations

import click

from styler._version import __version__
from styler.cli.apply import apply
from styler.cli.common import set_logging
from styler.cli.export import export
from styler.cli.sheet import sheet
from styler.cli.styles import styles
from styler.cli.train import train
from styler.cli.ui import ui
from styler.heap import retain_freed_memory


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="styler")
@click.option("-q", "--quiet", is_flag=True, help="Only print errors.")
@click.option("-v", "--verbose", count=True, help="Log setup steps with their times; -vv more detail.")
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
    set_logging(quiet, verbose)
    # Every command is a whole process of tensors freed and allocated again (training steps,
    # images of a folder, video frames): keep that memory instead of faulting it back in page by
    # page, which cost a fifth to a quarter of a 256 px training step or a 1024 px image.
    retain_freed_memory()
    ctx.obj = {"quiet": quiet, "verbose": verbose}


for command in (train, apply, export, sheet, styles, ui):
    main.add_command(command)

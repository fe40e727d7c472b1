"""``styler ui``: serve the local web page (:mod:`styler.ui`; needs the ``ui`` extra)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from styler.cli.common import common_options, device_option, handle_errors, print_json
from styler.config import UiConfig, default_weights_dir

_UI = UiConfig()


@click.command(short_help="Serve a local web page to try, train and manage styles.")
@click.option("--host", default=_UI.host, show_default=True,
              help="Address to listen on; 0.0.0.0 offers the page to everyone on your network.")
@click.option("--port", type=click.IntRange(0, 65535), default=_UI.port, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Accept images up to this many pixels [default: Pillow's limit, about 89 million]; "
                   "larger ones are refused as possible decompression bombs.")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=_UI.max_upload_bytes // 2**20,
              show_default=True, help="Largest file the page accepts, in MiB.")
@device_option
@common_options
@click.pass_context
@handle_errors
def ui(ctx: click.Context, host: str, port: int, no_browser: bool, max_pixels: int | None, max_upload_mb: int,
       device: str, weights_dir: Path | None, as_json: bool) -> None:
    """Serve a local web page: try every style on your photos, train your own, manage your styles.

    \b
    Examples:
      styler ui
      styler ui --port 8000 --no-browser
      styler ui --weights-dir ~/styles --max-pixels 50000000
    """
    from styler.ui import require_extra

    require_extra()
    import webbrowser

    from styler.io.images import max_image_pixels
    from styler.ui.app import create_app
    from styler.ui.server import is_loopback, listen, serve, url_of

    ctx.with_resource(max_image_pixels(max_pixels))  # Pillow's limit, restored when the command ends
    config = UiConfig(host=host, port=port, max_upload_bytes=max_upload_mb * 2**20)
    app = create_app(weights_dir or default_weights_dir(), device, config)
    if not is_loopback(host):
        click.echo(f"warning: --host {host} lets anyone who can reach this machine use the page: stylize, "
                   f"train on its folders, rename and delete your styles", err=True)
    sock = listen(host, port)
    url = url_of(host, sock)
    if as_json:
        print_json({"url": url})
    else:
        click.echo(f"styler ui on {url} (Ctrl-C stops it)")
    if not no_browser:
        webbrowser.open(url)
    # Ctrl-C is the way to stop a server: uvicorn shuts down cleanly, then either passes the
    # interrupt on or returns, depending on when the signal lands.
    with contextlib.suppress(KeyboardInterrupt):
        serve(app, sock, "info" if ctx.find_root().obj["verbose"] else "warning")
    click.echo("stopped", err=True)

"""``styler styles``: the trained styles in the weights folder."""

from __future__ import annotations

from pathlib import Path

import click

from styler.cli.common import common_options, console, handle_errors, print_json
from styler.config import default_weights_dir
from styler.errors import StylerError


@click.command()
@common_options
@handle_errors
def styles(weights_dir: Path | None, as_json: bool) -> None:
    """List the trained styles in the weights folder.

    \b
    Examples:
      styler styles
      STYLER_WEIGHTS_DIR=~/styles styler styles --json
    """
    from styler.io.weights import list_weights

    directory = weights_dir or default_weights_dir()
    found = list_weights(directory)
    rows = []
    for item in found:
        if isinstance(item, StylerError):
            rows.append({"name": "?", "error": str(item)})
            continue
        meta = item.metadata
        rows.append({"name": item.path.stem, "features": item.features, "steps": meta.get("steps", "?"),
                     "image_size": meta.get("image_size", "?"), "created": meta.get("created_utc", "?"),
                     "path": str(item.path)})
    if as_json:
        print_json({"weights_dir": str(directory), "styles": rows})
        return
    if not rows:
        click.echo(f"no styles in {directory}; train one with 'styler train'")
        return
    from rich.table import Table

    table = Table(title=f"styles in {directory}")
    for column in ("name", "features", "steps", "image size", "created"):
        table.add_column(column)
    for row in rows:
        if "error" in row:
            table.add_row("[red]unreadable[/red]", row["error"], "", "", "")
        else:
            table.add_row(row["name"], row["features"], str(row["steps"]), str(row["image_size"]), row["created"])
    console(stderr=False).print(table)

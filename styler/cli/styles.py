"""``styler styles``: the user's styles (the weights folder) and the bundled ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from styler.cli.common import common_options, console, handle_errors, print_json
from styler.config import default_weights_dir


@click.command()
@common_options
@handle_errors
def styles(weights_dir: Path | None, as_json: bool) -> None:
    """List your styles (the weights folder) and the bundled ones.

    \b
    Examples:
      styler styles
      STYLER_WEIGHTS_DIR=~/styles styler styles --json
    """
    from styler.io.weights import bundled_dir, list_styles

    directory = weights_dir or default_weights_dir()
    found = list_styles(directory)
    hidden = {style.name for style in found if style.shadowed}
    rows = [_style_row(style, style.name in hidden) for style in found]
    if as_json:
        print_json({"weights_dir": str(directory.resolve()), "bundled_dir": str(bundled_dir()), "styles": rows})
        return
    if not rows:
        click.echo(f"no styles in {directory}; train one with 'styler train'")
        return
    _print_table(rows, directory)


def _print_table(rows: list[dict[str, Any]], directory: Path) -> None:
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
                          f"{row['steps_trained']}{best}", str(row["image_size"]), row["created"])
    console(stderr=False).print(table)


def _style_row(style: Any, hides_bundled: bool) -> dict[str, Any]:
    """One ``styles`` row: where the style comes from, how it was trained, or why it is unreadable."""
    from styler.io.weights import short_reason

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
            # A file without steps_trained records its last step as "steps".
            "steps_trained": meta.get("steps_trained", meta.get("steps", "?")), "best_step": meta.get("best_step"),
            "image_size": meta.get("image_size", "?"), "created": meta.get("created_utc", "?")}

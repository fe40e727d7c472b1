"""``styler styles``: every style a name can pick (yours, ``./weights``, the bundled ones) and
the folders searched for them; one line per style at 80 columns, the details under ``-v``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from styler.cli.common import common_options, handle_errors, print_json

COLUMNS = (("name", "name"), ("source", "source"), ("loss network", "loss_network"), ("steps (kept)", "steps"),
           ("created", "date"))


@click.command(short_help="List the styles a name can pick and the folders searched.")
@common_options
@click.pass_context
@handle_errors
def styles(ctx: click.Context, weights_dir: Path | None, as_json: bool) -> None:
    """List the styles a name can pick, and the folders searched for them: your weights folder,
    ./weights when it exists, then the bundled styles. A style hides later ones of its name.
    -v adds each style's file, loss network file and lineage.

    \b
    Examples:
      styler styles
      styler styles -v
      STYLER_WEIGHTS_DIR=~/styles styler styles --json
    """
    from styler.io.weights import bundled_dir, list_styles, search_dirs

    folders = search_dirs(weights_dir)
    rows = [_style_row(style) for style in list_styles(weights_dir)]
    if as_json:
        print_json({"weights_dir": str(folders[0][1].absolute()), "bundled_dir": str(bundled_dir()),
                    "searched": [{"source": s, "folder": str(f.absolute())} for s, f in folders], "styles": rows})
        return
    for source, folder in folders:
        click.echo(f"{source + ':':<10} {folder.absolute()}{'' if folder.is_dir() else ' (none yet)'}")
    if not rows:
        click.echo("no styles yet; train one with 'styler train'")
        return
    verbose = ctx.find_root().obj.get("verbose", 0) if ctx.find_root().obj else 0
    _print_table(rows, verbose > 0)


def _print_table(rows: list[dict[str, Any]], verbose: bool) -> None:
    """Plain columns as wide as their widest cell: nothing is cut, and a bundled style's row
    takes 72 characters."""
    lines = [[title for title, _ in COLUMNS], *([_cell(row, key) for _, key in COLUMNS] for row in rows)]
    widths = [max(map(len, column)) for column in zip(*lines)]
    click.echo("")
    for index, line in enumerate(lines):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        for detail in _details(rows[index - 1]) if verbose and index else ():
            click.echo(f"    {detail}")


def _cell(row: dict[str, Any], key: str) -> str:
    if "error" in row and key == "loss_network":
        return f"unreadable: {row['error']}"
    if "error" in row and key in ("steps", "date"):
        return ""
    if key == "steps":
        kept = row["best_step"] + row["lineage_steps"] - row["steps_trained"]
        return f"{row['lineage_steps']} ({kept})"
    if key == "date":
        return str(row["created"])[:10]
    return str(row[key])


def _details(row: dict[str, Any]) -> list[str]:
    """``-v``: the file, the loss network in full and where the training started."""
    lines = [f"file: {row['path']}"]
    if "error" in row:
        return lines
    before = row["lineage_steps"] - row["steps_trained"]
    if row["init_head_start"]:
        start = "from the head start"
    elif row["init_from"]:
        start = f"from {row['init_from']}" + (f" ({before} steps before)" if before else "")
    else:
        start = "from scratch"
    created = str(row["created"]).replace("T", " ").replace("Z", " UTC")
    return [*lines, f"loss network: {row['features_source']}",
            f"trained: {row['steps_trained']} steps {start}, kept step {row['best_step']}",
            f"crops: {row['image_size']} px; created {created}"]


def _style_row(style: Any) -> dict[str, Any]:
    """One style: where it comes from, how it was trained, or why it is unreadable."""
    source = f"{style.source}, hidden" if style.shadowed else style.source
    row: dict[str, Any] = {"name": style.name, "source": source, "bundled": style.bundled,
                           "shadowed": style.shadowed, "hidden_by": style.hidden_by or None,
                           "path": str(style.path.resolve())}
    if style.error is not None:
        from styler.io.weights import short_reason

        return {**row, "error": short_reason(style.error, style.path)}
    info, meta = style.info, style.info.metadata
    return {**row, "features": info.features, "loss_network": info.loss_network,
            "features_source": meta.get("features_source") or info.features,
            "steps_trained": info.steps_trained, "best_step": meta.get("best_step", info.steps_trained),
            "lineage_steps": info.lineage_steps, "init_from": meta.get("init_from"),
            "init_head_start": bool(meta.get("init_head_start")),
            "image_size": meta.get("image_size", "?"), "created": meta.get("created_utc", "?")}

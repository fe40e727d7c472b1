"""``styler apply --engine ray``: the options, and the run on a Ray cluster with its progress bar.

The planning, the output rules and the summary are the local run's (``styler.cli.apply``); only
where the files are stylized changes (:mod:`styler.inference.cluster`). Ray is imported by the
library when the engine is chosen, never by ``styler apply`` itself.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable

import click
from click.core import ParameterSource

from styler.cli.common import console, image_progress
from styler.config import ApplyConfig, ClusterConfig, Engine, FolderConfig, VideoConfig

_CLUSTER = ClusterConfig()


def ray_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options of ``apply`` that choose the engine and shape the Ray cluster's worker pool."""
    decorators = [
        click.option("--engine", type=click.Choice([e.value for e in Engine]), default=Engine.LOCAL.value,
                     show_default=True, help="Where to stylize: this machine, or a Ray cluster (pip install "
                     "'styler[ray]'; inputs and outputs on a filesystem every worker sees)."),
        click.option("--ray-address", default=_CLUSTER.address, envvar="RAY_ADDRESS", show_envvar=True,
                     help="The Ray cluster to use [default: one running on this machine, else a new local one]."),
        click.option("--ray-workers", type=int, default=_CLUSTER.workers,
                     help="Workers, each with the style loaded once [default: as many as the cluster's GPUs, "
                     "else CPUs, hold]."),
        click.option("--gpus-per-worker", type=float, default=_CLUSTER.gpus_per_worker,
                     help="GPUs each worker takes [default: 1 where the cluster has GPUs, else 0]."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def cluster_config(engine: str, address: str | None, workers: int | None,
                   gpus_per_worker: float | None) -> ClusterConfig | None:
    """The cluster's settings, or None for a run on this machine. Ray is checked for at once,
    so a missing extra is the first thing said."""
    if Engine(engine) is Engine.LOCAL:
        typed = click.get_current_context().get_parameter_source("ray_address") is ParameterSource.COMMANDLINE
        given = [flag for flag, value in (("--ray-address", address if typed else None), ("--ray-workers", workers),
                                          ("--gpus-per-worker", gpus_per_worker)) if value is not None]
        if given:  # $RAY_ADDRESS alone is fine: it is there for every command of the shell
            raise click.UsageError(f"{', '.join(given)}: only used with --engine ray")
        return None
    from styler.inference.cluster import import_ray

    import_ray()
    return ClusterConfig(address=address, workers=workers, gpus_per_worker=gpus_per_worker)


class RayRun:
    """``--engine ray``: the style found here as a local run finds it (its name and the settings
    its outputs record, from the file's header; the workers load the network), its files
    stylized on the cluster under one progress bar of files (a moving file counts once: its
    frames are the worker's business), started once connected: starting a local cluster takes
    seconds that say nothing about the rate."""

    def __init__(self, style: str, weights_dir: Path | None, device: str, config: ApplyConfig,
                 cluster: ClusterConfig) -> None:
        from styler.inference.cluster import read_style

        self.style, self.weights_dir, self.device, self.config, self.cluster = style, weights_dir, device, config, \
            cluster
        self.info = read_style(style, weights_dir, config)
        self.name = self.info.name

    def settings(self, folder: FolderConfig) -> str:
        """What every output of the run records (reruns compare it): what the workers' local
        pipelines write."""
        from styler.inference.pipeline import run_settings
        from styler.inference.stylizer import describe_settings

        return run_settings(describe_settings(self.info, self.config), folder)

    def __call__(self, pairs: list[tuple[Path, Path]], moving: list[tuple[Path, Path]], folder: FolderConfig,
                 video: VideoConfig, quiet: bool, written: list[Path]) -> Any:
        from styler.inference.cluster import apply_on_cluster, connected
        from styler.inference.pipeline import ApplySummary

        total = len(pairs) + len(moving)
        if not total:
            return ApplySummary()  # everything exists already: no cluster needed
        waiting = (f"connecting to the Ray cluster at {self.cluster.address}" if self.cluster.address else
                   "connecting to Ray (the cluster running on this machine, else a new local one)")
        with contextlib.ExitStack() as stack:
            # Ray prints a worker's death (and the retry) on stdout, where --json's object goes.
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            with contextlib.nullcontext() if quiet else console().status(waiting):  # a terminal's spinner only
                stack.enter_context(connected(self.cluster))
            advance = stack.enter_context(image_progress(total, f"stylizing with {self.name} on Ray",
                                                         quiet or total <= 1))

            def on_image(src: Path, error: str | None) -> None:
                if error is None:
                    written.append(src)  # for Ctrl-C's count
                advance(src, error)

            return apply_on_cluster(self.style, pairs, moving, weights_dir=self.weights_dir, device=self.device,
                                    config=self.config, folder=folder, video=video, cluster=self.cluster,
                                    on_image=on_image)

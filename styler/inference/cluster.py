"""Stylize on a Ray cluster: a list of files over many machines or GPUs, or a ``ray.data.Dataset``.

    driver: plan outputs (planning) -> tasks: chunks of still images, one task per moving file
      -> a pool of workers (Ray actors), each with the style loaded once, at most two tasks each:
         a chunk runs through the local pipeline (decode threads, same-size batches bounded in
         pixels, atomic writes with the run's settings in their mark), a video or animated image
         through inference.video
      -> per-file results back to the driver as tasks finish: progress, the local run's summary

The driver plans as a local run does (:mod:`styler.inference.planning`: outputs, unsupported
files, what a rerun redoes) from the style's file header alone, without loading the network.
Paths travel, not pixels: workers read the inputs and write the outputs themselves, with the
code a local run writes them with, so the files must be where every worker sees them (one
machine, a shared or mounted filesystem). A worker that dies (killed, out of memory, a lost
machine) is restarted and its task retried, up to ``ClusterConfig.retries`` times; the restarted
worker first deletes the temp files the dead one left. Ray is imported inside functions only,
since it is an optional extra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from styler.config import ApplyConfig, ClusterConfig, FolderConfig, VideoConfig
from styler.errors import ClusterError, StylerError
from styler.heap import retain_freed_memory
from styler.inference.pipeline import ApplySummary, OnImage, apply_to_paths
from styler.inference.stylizer import check_tile
from styler.io.files import check_writable, file_sha256, remove_stale_temps
from styler.io.weights import WeightsInfo, is_bundled_dir, read_info, resolve_weights

Pair = tuple[Path, Path]
Task = tuple[str, Any]  # ("stills", [pairs]) or ("moving", pair)
_IN_FLIGHT = 2  # tasks queued on a worker: the next one starts without waiting for the driver
_DEFAULT_PORTS = {"ray://": 10001, "": 6379}  # Ray Client, then the cluster's GCS
_STOP_WAIT = 10.0  # seconds a stopped run waits for its killed workers before removing their temp files
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and empty SETTINGS


def import_ray() -> Any:
    """The ``ray`` module, or one line naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError("the Ray engine needs Ray: pip install 'styler[ray]'") from exc
    return ray


def read_style(style: str | Path, weights_dir: Path | None = None, config: ApplyConfig | None = None) -> WeightsInfo:
    """The header of the style's weights file, found as a local run finds it, with ``config``'s
    tile size checked against it (same errors, same messages), without loading the network
    here: the workers do. Its name names the outputs; with ``config`` it gives the settings
    outputs record (:func:`styler.inference.stylizer.describe_settings`)."""
    info = read_info(resolve_weights(str(style), weights_dir))
    check_tile((config or ApplyConfig()).tile, info.generator.stride, info.name)
    return info


class StyleWorker:
    """One process of the pool: the style loaded once, then tasks of files or dataset batches.
    A load error is kept and returned by :meth:`ready`, since Ray would bury an ``__init__``
    error in a traceback of its own."""

    def __init__(self, style: str, weights_dir: Path | None, device: str, config: ApplyConfig) -> None:
        from styler.inference.stylizer import Stylizer

        retain_freed_memory()  # a process of its own, as the styler command is
        self.error: StylerError | None = None
        try:
            self.stylizer = Stylizer.load(style, weights_dir=weights_dir, device=device, config=config)
        except StylerError as exc:
            self.error = exc

    def ready(self, folders: Sequence[Path]) -> tuple[StylerError | None, str]:
        """(the error that stops this worker, or None; the SHA-256 of the weights it loaded)."""
        if self.error is not None:
            return self.error, ""
        try:
            for folder in folders:
                check_writable(folder, "output folder")
        except StylerError as exc:
            return type(exc)(f"{exc} (on the worker at {_node()})"), ""
        return None, file_sha256(self.stylizer.info.path) if self.stylizer.info else ""

    def stills(self, pairs: Sequence[Pair], folder: FolderConfig) -> ApplySummary:
        self._after_restart(pairs)
        return apply_to_paths(self.stylizer, pairs, folder)

    def moving(self, src: Path, dst: Path, video: VideoConfig, quality: int) -> ApplySummary:
        from styler.inference.video import stylize_file

        self._after_restart([(src, dst)])
        summary = ApplySummary()
        try:
            stylize_file(self.stylizer, src, dst, video, None, quality)
            summary.done.append(dst)
            summary.pairs.append((src, dst))
        except StylerError as exc:
            summary.failed.append((src, str(exc)))
        return summary

    def __call__(self, batch: dict[str, Any], column: str, batch_pixels: int) -> dict[str, Any]:
        """A Ray Data batch with ``column``'s images stylized (see :func:`stylize_dataset`)."""
        from styler.inference.cluster_data import stylize_batch

        if self.error is not None:
            raise self.error
        return stylize_batch(self.stylizer, batch, column, batch_pixels)

    @staticmethod
    def _after_restart(pairs: Sequence[Pair]) -> None:
        import ray

        if ray.get_runtime_context().was_current_actor_reconstructed:
            remove_stale_temps(dst for _, dst in pairs)


def _node() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_reachable(address: str, timeout: float) -> None:
    """Something that speaks gRPC (as a Ray head does) at ``address``, checked within ``timeout``
    seconds: Ray itself retries an address that does not answer, or answers something else, for
    many minutes. An HTTP/2 server answers a client's connection preface with a SETTINGS frame."""
    if address in ("auto", "local"):
        return
    scheme = "ray://" if address.startswith("ray://") else ""
    host, _, port = address.removeprefix(scheme).rstrip("/").rpartition(":")
    if not port.isdigit():
        host, port = address.removeprefix(scheme).rstrip("/"), str(_DEFAULT_PORTS[scheme])
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ClusterError(f"no Ray cluster answers at {address} ({reason}); start one there with 'ray start "
                           f"--head', or give no address to start one on this machine") from exc
    with sock:
        if os.environ.get("RAY_USE_TLS", "0") in ("0", "") and not _speaks_http2(sock):  # TLS: handshake first
            raise ClusterError(f"{address} answers, but not as a Ray cluster does; give the address 'ray start "
                               f"--head' printed there (port 6379 by default)")


def _speaks_http2(sock: socket.socket) -> bool:
    """Whether the server answers an HTTP/2 client preface with a SETTINGS frame, as gRPC does."""
    try:
        sock.sendall(_HTTP2_PREFACE)
        frame = sock.recv(9)
    except OSError:  # reset or silent: not a gRPC server
        return False
    return len(frame) == 9 and frame[3] == 4  # a frame header: 24-bit length, then the type (4: SETTINGS)


@contextlib.contextmanager
def connected(config: ClusterConfig | None = None) -> Iterator[Any]:
    """The ``ray`` module, connected for the block to the cluster at ``config.address`` (else
    ``$RAY_ADDRESS``, else one already running on this machine, else a new local one, stopped
    when the block ends). A connection made before (``ray.init`` by the caller) is used as is."""
    ray = import_ray()
    config = config or ClusterConfig()
    if ray.is_initialized():
        yield ray
        return
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_reachable(address, config.connect_timeout)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # Ray raises a bare Exception when a local cluster does not come up in time
        raise ClusterError(f"cannot connect to the Ray cluster at {address or 'this machine'}: "
                           f"{_first_line(exc)}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def pool_shape(ray: Any, config: ClusterConfig, tasks: int | None = None) -> tuple[int, float]:
    """(workers, GPUs per worker) for a run of ``tasks`` tasks on the connected cluster."""
    resources = ray.cluster_resources()
    have_gpus, have_cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    gpus = config.gpus_per_worker if config.gpus_per_worker is not None else (1.0 if have_gpus >= 1 else 0.0)
    if gpus > have_gpus:
        raise ClusterError(f"gpus_per_worker is {gpus:g} but the cluster has {have_gpus:g} GPUs")
    if config.cpus_per_worker > have_cpus:
        raise ClusterError(f"cpus_per_worker is {config.cpus_per_worker:g} but the cluster has {have_cpus:g} CPUs")
    fits = have_gpus // gpus if gpus else have_cpus // config.cpus_per_worker
    workers = config.workers or max(1, int(fits))
    return (min(workers, tasks) if tasks else workers), gpus


def _roots(pairs: Sequence[Pair]) -> list[Path]:
    """The outermost output folders of ``pairs``: what each worker must be able to write."""
    roots: list[Path] = []
    for parent in sorted({dst.parent for _, dst in pairs}, key=lambda p: len(p.parts)):
        if not any(parent.is_relative_to(root) for root in roots):
            roots.append(parent)
    return roots


class _Scheduler:
    """Tasks out to the workers that are ready, results back as they finish (see the module
    docstring). Starting workers and running tasks are both waited on, so work begins as soon
    as the first worker has loaded the style."""

    def __init__(self, ray: Any, actors: list[Any], folders: list[Path], weights_sha: str, folder: FolderConfig,
                 video: VideoConfig) -> None:
        self.ray, self.weights_sha, self.folder, self.video = ray, weights_sha, folder, video
        self.starting = {actor.ready.remote(folders): actor for actor in actors}
        self.load: dict[Any, int] = {}  # ready worker -> tasks queued on it
        self.running: dict[Any, tuple[Any, Task]] = {}  # result -> (worker, task)
        self.started: float | None = None
        self.lost = ""  # why the last worker that died for good did

    def run(self, tasks: deque[Task], finish: Callable[[Task, ApplySummary | str], None]) -> None:
        while tasks or self.running:
            self._submit(tasks)
            waiting = [*self.starting, *self.running]
            if not waiting:
                raise ClusterError(f"every Ray worker died ({self.lost}); the outputs written so far are "
                                   f"complete, and running the same command again does the rest")
            done, _ = self.ray.wait(waiting, num_returns=1)
            if done[0] in self.starting:
                self._started(done[0])
            else:
                actor, task = self.running.pop(done[0])
                self.load[actor] -= 1
                finish(task, self._result(done[0], actor))

    def _submit(self, tasks: deque[Task]) -> None:
        for actor in sorted(self.load, key=self.load.get):
            while tasks and self.load[actor] < _IN_FLIGHT:
                kind, work = task = tasks.popleft()
                ref = (actor.moving.remote(*work, self.video, self.folder.quality) if kind == "moving" else
                       actor.stills.remote(work, self.folder))
                self.running[ref] = (actor, task)
                self.load[actor] += 1

    def _started(self, ref: Any) -> None:
        import time

        actor = self.starting.pop(ref)
        try:
            error, sha = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self.lost = _first_line(exc)
            return  # this worker could not start; the others carry the run
        if error is not None:
            raise error
        if sha != self.weights_sha:
            raise ClusterError(f"the workers loaded another file for this style than the one here (SHA-256 "
                               f"{self.weights_sha[:12]}...); pass the style as a path every worker sees")
        self.load[actor] = 0
        self.started = self.started or time.perf_counter()

    def stop(self, actors: Sequence[Any]) -> None:
        """End the pool. Tasks cut short (Ctrl-C, an error) leave no temp file: their killed
        workers are waited for, then the temp files beside their outputs removed."""
        for ref in self.running:
            self.ray.cancel(ref)  # cancelled, not retried: Ray says nothing more about them
        for actor in actors:
            self.ray.kill(actor)
        if self.running:
            self.ray.wait(list(self.running), num_returns=len(self.running), timeout=_STOP_WAIT)
            remove_stale_temps(dst for _, task in self.running.values() for _, dst in _task_pairs(task))

    def _result(self, ref: Any, actor: Any) -> ApplySummary | str:
        """A task's summary, or why it could not run (its worker died more often than allowed)."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self.load.pop(actor, None)  # dead for good: no more tasks to it
            self.lost = _first_line(exc)
            return f"its Ray worker died and was not restarted again ({self.lost})"


def _tasks(stills: Sequence[Pair], moving: Sequence[Pair], workers: int, most: int) -> deque[Task]:
    """Moving files first (the longest tasks: the pool ends together), then chunks of stills,
    small enough that every worker gets two or more."""
    per_task = max(1, min(most, math.ceil(len(stills) / (2 * workers))))
    chunks = [[_absolute(p) for p in stills[i:i + per_task]] for i in range(0, len(stills), per_task)]
    return deque([*(("moving", _absolute(pair)) for pair in moving), *(("stills", chunk) for chunk in chunks)])


def _task_pairs(task: Task) -> list[Pair]:
    kind, work = task
    return [work] if kind == "moving" else list(work)


def _absolute(pair: Pair) -> Pair:
    return Path(pair[0]).absolute(), Path(pair[1]).absolute()


def for_workers(style: str | Path, weights_dir: Path | None) -> tuple[str, Path | None]:
    """(style, weights folder) as workers look the style up, whatever folder and environment they
    run in: a file as an absolute path; a name stays a name (a worker may hold its own copy; the
    driver checks they all loaded the same bytes), looked up first in the folder the driver found
    it in, since a worker has neither the driver's working folder (``./weights``) nor its
    ``$STYLER_HOME``. A name found nowhere is the local run's one line, here."""
    if Path(style).is_file():
        return str(Path(style).absolute()), Path(weights_dir).absolute() if weights_dir is not None else None
    found = resolve_weights(str(style), weights_dir).parent
    folder = weights_dir if is_bundled_dir(found) else found
    return str(style), Path(folder).absolute() if folder is not None else None


def apply_on_cluster(style: str | Path, stills: Sequence[Pair], moving: Sequence[Pair], *,
                     weights_dir: Path | None = None, device: str = "auto", config: ApplyConfig | None = None,
                     folder: FolderConfig | None = None, video: VideoConfig | None = None,
                     cluster: ClusterConfig | None = None, on_image: OnImage | None = None) -> ApplySummary:
    """Stylize planned (input, output) pairs on a Ray cluster, as :func:`apply_to_paths` and
    :func:`styler.inference.video.stylize_file` do here: same outputs, same summary (seconds
    counted from the first worker ready). ``on_image(src, error)`` follows every file."""
    import time

    folder, video, cluster = folder or FolderConfig(), video or VideoConfig(), cluster or ClusterConfig()
    summary = ApplySummary()
    if not stills and not moving:
        return summary  # nothing left to do (a rerun): no cluster needed
    weights_sha = file_sha256(resolve_weights(str(style), weights_dir))
    names = {_absolute(p): p for p in [*stills, *moving]}  # results name files as they were given
    with connected(cluster) as ray:
        actors = _start_workers(ray, cluster, len(moving) + math.ceil(len(stills) / cluster.images_per_task),
                                (*for_workers(style, weights_dir), device, config or ApplyConfig()))
        scheduler = _Scheduler(ray, actors, _roots(list(names)), weights_sha, folder, video)
        try:
            scheduler.run(_tasks(stills, moving, len(actors), cluster.images_per_task),
                          lambda task, result: _merge(summary, task, result, names, on_image))
        finally:
            scheduler.stop(actors)
    summary.seconds = time.perf_counter() - scheduler.started if scheduler.started else 0.0
    return summary


def _start_workers(ray: Any, cluster: ClusterConfig, tasks: int, args: tuple[Any, ...]) -> list[Any]:
    """The pool's actors, each loading the style with ``args``; restarted when they die."""
    count, gpus = pool_shape(ray, cluster, tasks)
    remote = ray.remote(StyleWorker).options(num_cpus=cluster.cpus_per_worker, num_gpus=gpus,
                                             max_restarts=cluster.retries, max_task_retries=cluster.retries)
    return [remote.remote(*args) for _ in range(count)]


def _merge(summary: ApplySummary, task: Task, result: ApplySummary | str, names: dict[Pair, Pair],
           on_image: OnImage | None) -> None:
    """A finished task's files into ``summary``, named as the caller gave them."""
    given = {src: names[(src, dst)] for src, dst in _task_pairs(task)}
    if isinstance(result, str):
        result = ApplySummary(failed=[(src, result) for src in given])
    for src, _ in result.pairs:
        summary.done.append(given[src][1])
        summary.pairs.append(given[src])
        if on_image is not None:
            on_image(given[src][0], None)
    for src, reason in result.failed:
        for sent, name in zip((src, _absolute(given[src])[1]), given[src]):
            reason = reason.replace(str(sent), str(name))  # the paths a local run's messages show
        summary.failed.append((given[src][0], reason))
        if on_image is not None:
            on_image(given[src][0], reason)

"""Video files through PyAV: frames and audio packets in, frames and audio packets out.

:class:`Reader` yields a clip's frames (with their timestamps and rotation) and its audio packets
in demux order; :class:`Writer` encodes frames and muxes the audio packets untouched, keeping
the stream's rate, the frames' timestamps (variable frame rates survive) and the display rotation.
Audio whose codec the container cannot hold (AAC in WebM) is decoded and encoded again with the
container's own (Opus for WebM); what fits is checked before the first frame. The output is
written under a temporary name in the target folder
(:func:`styler.io.files.atomic_path`) and renamed when complete: a corrupt input, a crash or
Ctrl-C never leaves a half-written video. PyAV ships ffmpeg's libraries in its wheels, so there is
no ffmpeg to install; it is the optional extra ``styler[video]``. The stylization pipeline over
these is :mod:`styler.inference.video`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from styler.config import VIDEO_EXTENSIONS, VideoConfig
from styler.errors import VideoError
from styler.io.files import atomic_path
from styler.io.images import is_image_path

FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
_CODECS = {".webm": "libvpx-vp9"}  # everything else: H.264
_AUDIO_CODECS = {".webm": "libopus"}  # audio the container cannot hold unchanged; everything else: AAC
_SUBSAMPLED = ("yuv420p", "yuvj420p", "yuv422p", "nv12")  # chroma at half width: sizes must be even


def require_av() -> Any:
    """The ``av`` module, or a one-line error naming the extra that installs it."""
    try:
        import av
    except ImportError as exc:
        raise VideoError("videos need PyAV: pip install 'styler[video]'") from exc
    return av


def is_video_path(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_media_path(path: Path) -> bool:
    """Found in folders and globs: images, and videos when PyAV is installed."""
    if is_image_path(path):
        return True
    if not is_video_path(path):
        return False
    try:
        require_av()
    except VideoError:
        return False
    return True


@dataclass
class Frame:
    """One decoded frame: (3, H, W) uint8 pixels and its timestamp."""

    pixels: torch.Tensor
    pts: int | None
    time_base: Fraction | None
    rotation: int = 0


def _pixels(frame: Any, max_size: int | None) -> torch.Tensor:
    """RGB24 (any input bit depth or chroma layout is converted by swscale) as (3, H, W) uint8."""
    array = frame.to_ndarray(format="rgb24")
    pixels = torch.from_numpy(array).permute(2, 0, 1)
    h, w = pixels.shape[-2:]
    if max_size and max(h, w) > max_size:
        scale = max_size / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        pixels = F.interpolate(pixels[None].float(), size=size, mode="bilinear", antialias=True,
                               align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    return pixels.contiguous()


class Reader:
    """An input video: its first video stream, its audio streams, frames in demux order."""

    def __init__(self, path: Path, max_size: int | None = None) -> None:
        self.av, self.path, self.max_size = require_av(), Path(path), max_size
        try:
            self.container = self.av.open(str(path))
        except FileNotFoundError as exc:
            raise VideoError(f"{path}: no such file") from exc
        except (self.av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(f"{path}: not a video PyAV can read ({_reason(exc)})") from exc
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{path}: has no video stream")
        self.video = self.container.streams.video[0]
        self.audio = list(self.container.streams.audio)

    @property
    def total(self) -> int | None:
        """Frames in the clip: from the header, else estimated from duration and rate."""
        if self.video.frames:
            return int(self.video.frames)
        rate, seconds = self.video.average_rate, self._seconds()
        return round(float(rate) * seconds) or None if rate and seconds else None

    def _seconds(self) -> float | None:
        if self.video.duration and self.video.time_base:
            return float(self.video.duration * self.video.time_base)
        return self.container.duration / 1e6 if self.container.duration else None

    def _frame(self, frame: Any) -> Frame:
        return Frame(_pixels(frame, self.max_size), frame.pts, frame.time_base, int(frame.rotation or 0))

    def items(self) -> Iterator[Any]:
        """Frames and audio packets in demux order; a corrupt stream raises one-line errors."""
        try:
            for packet in self.container.demux(self.video, *self.audio):
                if packet.stream.type == "video":
                    for frame in packet.decode():
                        yield self._frame(frame)
                elif packet.dts is not None:  # the demuxer's final empty packets carry nothing
                    yield packet
        except self.av.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt or truncated video ({_reason(exc)})") from exc

    def samples(self, n: int) -> list[torch.Tensor]:
        """About ``n`` frames spread over the clip, found by seeking (cheap on long clips)."""
        seconds = self._seconds()
        if not seconds:
            return []
        found: dict[int, torch.Tensor] = {}
        tb = self.video.time_base
        start = self.video.start_time or 0
        try:
            with self.av.open(str(self.path)) as probe:
                stream = probe.streams.video[0]
                for i in range(n):
                    target = start + int(seconds * (i + 0.5) / n / tb)
                    probe.seek(target, stream=stream)
                    for frame in probe.decode(stream):
                        if frame.pts is None or frame.pts >= target:
                            found.setdefault(frame.pts or 0, _pixels(frame, self.max_size))
                            break
        except self.av.FFmpegError:
            # Not every file can seek (no index, no frames); the statistics then come from the
            # first frames, and the decoding pass reports a file that is really broken.
            return []
        return list(found.values())

    def close(self) -> None:
        self.container.close()


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).splitlines()[0]


def _even(pixels: torch.Tensor) -> torch.Tensor:
    """Pad the right and bottom edge by one replicated pixel where a side is odd: 4:2:0 needs even
    sizes, and padding (not cropping or scaling) leaves every pixel where it was."""
    h, w = pixels.shape[-2:]
    if not (h % 2 or w % 2):
        return pixels
    return F.pad(pixels[None].float(), (0, w % 2, 0, h % 2), mode="replicate")[0].to(torch.uint8)


def _supported(av: Any, fmt: str) -> set[str]:
    """Codec names a container format can hold (asked of an in-memory container)."""
    with av.open(io.BytesIO(), "w", format=fmt) as probe:
        return set(probe.supported_codecs)


def _encoder(av: Any, name: str) -> Any:
    try:
        return av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"codec {name!r} is not available ({_reason(exc)})") from exc


class _Audio:
    """One input audio stream in the output: its packets copied, or, where the container cannot
    hold its codec (AAC in WebM), decoded and encoded again with the container's own codec."""

    def __init__(self, av: Any, source: Any, supported: set[str], suffix: str) -> None:
        self.av, self.source = av, source
        name = source.codec_context.name
        self.encoder: Any = None
        if name in supported:
            return
        target = _AUDIO_CODECS.get(suffix, "aac")
        codec = _encoder(av, target)
        if target not in supported and codec.name not in supported:
            raise VideoError(f"a {suffix} file cannot hold the input's {name} audio, nor {target}; write .mkv")
        self.encoder = codec
        self.decoder = av.CodecContext.create(name, "r")
        self.decoder.extradata = source.codec_context.extradata
        self.stream: Any = None

    @property
    def copied(self) -> bool:
        return self.encoder is None

    def add_to(self, container: Any) -> None:
        if self.copied:
            self.stream = container.add_stream_from_template(self.source)
            return
        rates, rate = self.encoder.audio_rates, self.source.rate
        if rates and rate not in rates:  # Opus: 48 kHz and divisors only
            rate = min((r for r in rates if r >= rate), default=max(rates))
        self.stream = container.add_stream(self.encoder.name, rate=rate, layout=self.source.layout.name)

    def packets(self, packet: Any | None) -> Iterator[Any]:
        """What to mux for an input ``packet`` (None: flush the re-encoding at the end)."""
        if self.copied:
            if packet is not None:
                packet.stream = self.stream
                yield packet
            return
        for frame in self.decoder.decode(packet):
            frame.pts = None  # the encoder counts samples at its own rate
            yield from self.stream.encode(frame)
        if packet is None:
            yield from self.stream.encode(None)


class Writer:
    """The output video under a temporary name; opened at the first frame (its size and rotation
    decide the stream), renamed over ``dst`` by :meth:`finish`, deleted by :meth:`abort`. What the
    container can hold is checked here, before any frame: the video codec, and each audio stream,
    copied when the container takes its codec and encoded again otherwise (Opus for WebM)."""

    def __init__(self, dst: Path, reader: Reader, config: VideoConfig) -> None:
        self.av, self.dst, self.reader, self.config = reader.av, Path(dst), reader, config
        self.fmt = FORMATS.get(self.dst.suffix.lower())
        if self.fmt is None:
            raise VideoError(f"{dst}: write videos as one of {', '.join(sorted(FORMATS))}")
        supported = _supported(self.av, self.fmt)
        self.codec = config.codec or _CODECS.get(self.dst.suffix.lower(), "libx264")
        try:
            codec = _encoder(self.av, self.codec)
            if self.codec not in supported and codec.name not in supported:
                raise VideoError(f"a {self.dst.suffix} file cannot hold {self.codec} video; "
                                 f"leave the codec to the extension or write .mkv")
            self.audio = {s.index: _Audio(self.av, s, supported, self.dst.suffix.lower()) for s in reader.audio}
        except VideoError as exc:
            raise VideoError(f"{self.dst}: {exc}") from exc
        self.container: Any = None
        self.stream: Any = None
        self.early: list[Any] = []  # audio packets demuxed before the first frame
        self.file = contextlib.ExitStack()  # holds the atomic_path of the temporary file
        self.frames = 0

    @property
    def reencoded(self) -> list[str]:
        """``"aac -> libopus"`` for every audio stream that cannot be copied."""
        return [f"{a.source.codec_context.name} -> {a.encoder.name}" for a in self.audio.values() if not a.copied]

    def _open(self, first: Frame) -> None:
        try:
            tmp = self.file.enter_context(atomic_path(self.dst))
            self.container = self.av.open(tmp, "w", format=self.fmt)
        except (OSError, self.av.FFmpegError) as exc:
            raise VideoError(f"{self.dst}: cannot write ({_reason(exc)})") from exc
        self.stream = self._video_stream(first)
        for audio in self.audio.values():
            audio.add_to(self.container)

    def _video_stream(self, first: Frame) -> Any:
        name = self.codec
        stream = self._add_stream(name)
        formats = [f.name for f in (stream.codec_context.codec.video_formats or [])]
        stream.pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
        pixels = _even(first.pixels) if stream.pix_fmt in _SUBSAMPLED else first.pixels
        stream.height, stream.width = pixels.shape[-2:]
        if first.time_base is not None:
            stream.codec_context.time_base = first.time_base  # keep the input's timestamps
        self._quality(stream, name)
        if first.rotation:
            stream.set_display_rotation(first.rotation)
        return stream

    def _add_stream(self, name: str) -> Any:
        source = self.reader.video
        try:
            return self.container.add_stream(name, rate=source.average_rate or source.guessed_rate or 25)
        except (self.av.FFmpegError, ValueError) as exc:
            raise VideoError(f"{self.dst}: codec {name!r} is not available ({_reason(exc)})") from exc

    def _quality(self, stream: Any, name: str) -> None:
        """Constant quality at ``--crf`` for the x264/x265/VP9 encoders."""
        stream.options = {"crf": str(self.config.crf)}
        if name == "libx265":
            stream.options["x265-params"] = "log-level=error"  # x265 prints a report on stderr otherwise
        if name.startswith("libvpx"):
            stream.codec_context.bit_rate = 0  # constant quality, as --crf asks

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self.container.mux(packet)

    def write(self, item: Any) -> None:
        try:
            if isinstance(item, Frame):
                self._frame(item)
            elif self.stream is None:
                self.early.append(item)
            else:
                self._mux(self.audio[item.stream.index].packets(item))
        except self.av.FFmpegError as exc:
            raise VideoError(f"{self.dst}: cannot encode ({_reason(exc)})") from exc

    def _frame(self, frame: Frame) -> None:
        if self.stream is None:
            self._open(frame)
            for packet in self.early:
                self.write(packet)
            self.early = []
        pixels = _even(frame.pixels) if self.stream.pix_fmt in _SUBSAMPLED else frame.pixels
        out = self.av.VideoFrame.from_ndarray(pixels.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
        out.pts, out.time_base = (frame.pts, frame.time_base) if frame.pts is not None else (self.frames, None)
        self._mux(self.stream.encode(out))
        self.frames += 1

    def finish(self) -> None:
        if self.stream is None:
            raise VideoError(f"{self.reader.path}: the video stream has no frames")
        try:
            self._mux(self.stream.encode())
            for audio in self.audio.values():
                self._mux(audio.packets(None))
            self.container.close()
        except self.av.FFmpegError as exc:
            raise VideoError(f"{self.dst}: cannot encode ({_reason(exc)})") from exc
        self.file.close()  # renames the temporary file over dst

    def abort(self, error: BaseException) -> None:
        """Close and delete the temporary file; ``error``, which caused it, is already on its way."""
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # noqa: BLE001 - a broken half file; it is deleted next
            pass
        self.file.__exit__(type(error), error, error.__traceback__)  # atomic_path deletes it

"""Tiny clips and animations for the video tests, built with PyAV and Pillow in tmp_path (the
tiny ``demo`` style they run is conftest.py's ``weights`` fixture)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.config import GeneratorConfig

AUDIO_RATE = 8000
TINY = GeneratorConfig(base_channels=4, num_residual=1)


def run(args, weights):
    """``styler apply ARGS --style demo`` on the CPU."""
    return CliRunner().invoke(main, ["apply", *args, "--style", "demo", "--weights-dir", str(weights),
                                     "--device", "cpu"], catch_exceptions=False)


def frame_pixels(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i``: a smooth gradient with a bright bar that moves right, so frames differ."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), np.full_like(xx, 0.4, dtype=float)], -1)
    image[:, (i * 2) % width: (i * 2) % width + 3] = 1.0
    return (image * 255).astype(np.uint8)


def make_clip(path: Path, width: int = 64, height: int = 48, frames: int = 25, rate: int = 25,
              audio: bool = True, codec: str = "libx264", pix_fmt: str = "yuv420p", rotation: int = 0,
              pts: Sequence[int] | None = None, video: bool = True, audio_seconds: float | None = None) -> Path:
    """A clip of ``frames`` frames at ``rate`` fps (``pts``: explicit timestamps in 1/rate units,
    for variable frame rates) with an AAC mono track of the same length."""
    import av

    out = av.open(str(path), "w")
    stream = None
    if video:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = Fraction(1, rate)
        if rotation:
            stream.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
    if stream is not None:
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, width, height), format="rgb24")
            frame.pts, frame.time_base = (pts[i] if pts else i), Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    if sound is not None:
        t = 0
        tone = np.sin(np.arange(1024) * 0.05).astype(np.float32)[None] * 0.3
        while t < (frames / rate if audio_seconds is None else audio_seconds) * AUDIO_RATE:
            samples = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            samples.sample_rate, samples.pts = AUDIO_RATE, t
            t += 1024
            for packet in sound.encode(samples):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    out.start_encoding()  # a header even when no packet was written (the zero-frame clip)
    out.close()
    return path


def probe(path: Path) -> dict:
    """Frames (decoded), rate, size, rotation, timestamps (s) and audio packets of a clip."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        info = {"frames": len(frames), "rate": stream.average_rate, "size": (stream.width, stream.height),
                "rotation": frames[0].rotation if frames else 0,
                "times": [round(float(f.pts * f.time_base), 4) for f in frames],
                "first": frames[0].to_ndarray(format="rgb24") if frames else None}
    with av.open(str(path)) as container:
        info["audio"] = [bytes(p) for p in container.demux(*container.streams.audio) if p.dts is not None]
    return info


def make_gif(path: Path, frames: int = 4, size: tuple[int, int] = (40, 30), durations: Sequence[int] = (),
             loop: int | None = 0, disposal: Sequence[int] = (), **save: object) -> Path:
    """An animated GIF (or WebP/PNG by ``path``'s extension) of moving bars."""
    images = [Image.fromarray(frame_pixels(i * 3, *size)) for i in range(frames)]
    options: dict = {"save_all": True, "append_images": images[1:], "duration": list(durations or [100] * frames)}
    if loop is not None:
        options["loop"] = loop
    if disposal:
        options["disposal"] = list(disposal)
    images[0].save(path, **options, **save)
    return path

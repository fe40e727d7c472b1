"""Videos end to end: `styler apply clip.mp4` keeps frames, rate, size, rotation and audio, and
every bad clip fails one line without leaving a file behind."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from styler.config import VideoConfig
from styler.inference.temporal import FrameStylizer
from styler.inference.video import Estimate
from styler.nn import Generator
from tests.media import TINY, make_clip, probe, run

av = pytest.importorskip("av")


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_clip_keeps_frames_rate_size_rotation_and_audio(tmp_path, weights):
    src = make_clip(tmp_path / "clip.mp4", frames=30, rate=25, rotation=90)
    result = run([str(src), "--temporal", "shared"], weights)
    assert result.exit_code == 0, result.output
    before, after = probe(src), probe(tmp_path / "clip_demo.mp4")
    assert after["frames"] == before["frames"] == 30
    assert after["rate"] == 25 and after["size"] == (64, 48) and after["rotation"] == 90
    assert after["times"] == before["times"]
    assert after["audio"] and after["audio"] == before["audio"]  # every packet, byte for byte
    assert not leftovers(tmp_path)


def test_variable_frame_rate_timestamps_kept(tmp_path, weights):
    pts = [0, 1, 2, 5, 6, 10, 11, 12]
    src = make_clip(tmp_path / "vfr.mkv", frames=len(pts), pts=pts, audio=False)
    args = [str(src), "-o", str(tmp_path / "out.mp4"), "--temporal", "ema", "--stroke-scale", "2"]
    assert run(args, weights).exit_code == 0
    out = probe(tmp_path / "out.mp4")
    assert out["times"] == [p / 25 for p in pts] and out["size"] == (64, 48)


def test_odd_size_10_bit_input_is_padded_not_shifted(tmp_path, weights):
    if "yuv420p10le" not in [f.name for f in av.codec.Codec("ffv1", "w").video_formats]:
        pytest.skip("ffv1 without 10-bit")
    src = make_clip(tmp_path / "odd.mkv", width=63, height=47, frames=6, codec="ffv1", pix_fmt="yuv420p10le",
                    audio=False)
    # strength 0 returns the input: what comes out shows where each pixel went
    assert run([str(src), "-o", str(tmp_path / "out.mp4"), "--strength", "0", "--crf", "0"], weights).exit_code == 0
    out = probe(tmp_path / "out.mp4")
    assert out["frames"] == 6 and out["size"] == (64, 48)
    diff = np.abs(out["first"][:47, :63].astype(int) - probe(src)["first"].astype(int))
    assert diff.mean() < 4  # a one-pixel shift of the moving bar would cost far more


def test_one_pixel_clip(tmp_path, weights):
    src = make_clip(tmp_path / "dot.mkv", width=1, height=1, frames=3, codec="ffv1", pix_fmt="bgr0", audio=False)
    assert run([str(src), "-o", str(tmp_path / "dot.mp4")], weights).exit_code == 0
    assert probe(tmp_path / "dot.mp4")["frames"] == 3


@pytest.mark.parametrize("kind, message", [
    ("zero", "has no frames"), ("audio_only", "has no video stream"), ("truncated", "not a video PyAV can read"),
    ("text", "not a video PyAV can read")])
def test_bad_clip_one_line_and_no_output(tmp_path, weights, kind, message):
    src = tmp_path / "bad.mp4"
    if kind == "zero":
        make_clip(tmp_path / "bad.mkv", frames=0, audio_seconds=1)  # a video stream without frames
        src = tmp_path / "bad.mkv"
    elif kind == "audio_only":
        make_clip(src, video=False)
    elif kind == "truncated":
        whole = make_clip(tmp_path / "whole.mp4", frames=25).read_bytes()
        src.write_bytes(whole[:len(whole) // 2])
    else:
        src.write_text("not a video")
    result = run([str(src), "-o", str(tmp_path / "out.mp4")], weights)
    assert result.exit_code == 1
    named = [line for line in result.output.splitlines() if str(src) in line]
    assert len(named) == 1 and message in named[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out.mp4").exists() and not leftovers(tmp_path)


def test_ctrl_c_leaves_no_partial_output(tmp_path, weights, monkeypatch):
    src = make_clip(tmp_path / "clip.mp4", frames=20)
    calls = []
    real = FrameStylizer.__call__

    def interrupt_second_batch(self, frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, frames)

    monkeypatch.setattr(FrameStylizer, "__call__", interrupt_second_batch)
    result = run([str(src), "-o", str(tmp_path / "out.mp4"), "--batch-size", "2"], weights)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert not (tmp_path / "out.mp4").exists() and not leftovers(tmp_path)


def test_missing_pyav_names_the_extra(tmp_path, weights, monkeypatch):
    src = make_clip(tmp_path / "clip.mp4", frames=2, audio=False)
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    result = run([str(src)], weights)
    assert result.exit_code == 1 and "pip install 'styler[video]'" in result.output


def test_folders_skip_videos_without_pyav(tmp_path, weights, monkeypatch):
    from tests.conftest import make_photo

    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", frames=2, audio=False)
    make_photo(tmp_path / "in" / "b.png")
    monkeypatch.setitem(sys.modules, "av", None)
    result = run([str(tmp_path / "in"), "-o", str(tmp_path / "out")], weights)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]


def test_webm_by_extension_reencodes_aac_audio_as_opus(tmp_path, weights):
    silent = make_clip(tmp_path / "silent.mp4", frames=4, audio=False)
    assert run([str(silent), "-o", str(tmp_path / "out.webm"), "--max-size", "32"], weights).exit_code == 0
    with av.open(str(tmp_path / "out.webm")) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
    assert probe(tmp_path / "out.webm")["size"] == (32, 24)  # --max-size shrinks a video
    loud = make_clip(tmp_path / "loud.mp4", frames=25)  # one second of AAC: WebM cannot hold it unchanged
    result = run([str(loud), "-o", str(tmp_path / "loud.webm")], weights)
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr  # a one-second clip is not long
    with av.open(str(tmp_path / "loud.webm")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "opus" and audio.rate == 48000
        seconds = sum(frame.samples for frame in container.decode(audio)) / audio.rate
    assert 0.95 < seconds < 1.1 and probe(tmp_path / "loud.webm")["frames"] == 25


def test_container_and_codec_fit_is_checked_before_the_first_frame(tmp_path, weights, monkeypatch):
    calls = []
    monkeypatch.setattr(FrameStylizer, "__call__", lambda self, frames: calls.append(1))
    src = make_clip(tmp_path / "clip.mp4", frames=4)
    result = run([str(src), "-o", str(tmp_path / "out.webm"), "--codec", "libx264"], weights)
    assert result.exit_code == 1 and "a .webm file cannot hold libx264 video" in result.output, result.output
    assert calls == [] and not (tmp_path / "out.webm").exists() and not leftovers(tmp_path)


def test_a_long_clip_says_how_long_and_what_shortens_it(tmp_path, weights, monkeypatch):
    import styler.inference.video as video

    src = make_clip(tmp_path / "wide.mp4", width=1024, height=32, frames=3, audio=False)
    assert run([str(src), "-o", str(tmp_path / "a.mp4")], weights).stderr.count("note:") == 0
    monkeypatch.setattr(video, "LONG_VIDEO_SECONDS", 0.0)  # every clip is long
    result = run([str(src), "-o", str(tmp_path / "b.mp4")], weights)
    assert result.exit_code == 0, result.output
    (note,) = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert "wide.mp4: 3 frames at" in note and "frames/s, about" in note
    assert "--max-size 720 (2x fewer pixels) or --stroke-scale 2 (4x fewer pixels) shortens it" in note


def test_estimate_of_a_phone_clip():
    """30 s of 1080p at 0.9 frames/s, as the issue measured: about 17 minutes."""
    estimate = Estimate(frames=900, frames_per_second=0.9, height=1080, width=1920, stroke_scale=1.0)
    assert estimate.long and estimate.duration == "17 min"
    (size, value, fewer), strokes = estimate.shorter()
    assert (size, value, round(fewer, 1)) == ("max_size", 720, 7.1) and strokes == ("stroke_scale", 2.0, 4.0)
    assert Estimate(40, 20.0, 480, 640, 2.0).shorter() == [("stroke_scale", 4.0, 4.0)]
    assert Estimate(40, 20.0, 480, 640, 2.0).duration == "2 s" and not Estimate(40, 20.0, 480, 640, 2.0).long
    assert Estimate(8000, 1.0, 480, 640, 1.0).duration == "2 h 13 min"


def test_unknown_codec_and_image_output_for_video(tmp_path, weights):
    src = make_clip(tmp_path / "clip.mp4", frames=2, audio=False)
    result = run([str(src), "-o", str(tmp_path / "o.mp4"), "--codec", "nonesuch"], weights)
    assert result.exit_code == 1 and "codec 'nonesuch' is not available" in result.output
    result = run([str(src), "-o", str(tmp_path / "o.png")], weights)
    assert result.exit_code == 1 and "a video is written as one of" in result.output


def test_folder_mixes_videos_images_and_gifs(tmp_path, weights):
    from tests.conftest import make_photo
    from tests.media import make_gif

    root = tmp_path / "mixed"
    root.mkdir()
    make_clip(root / "a.mp4", frames=3, audio=False)
    make_photo(root / "b.png")
    make_gif(root / "c.gif")
    result = run([str(root), "-o", str(tmp_path / "out"), "--format", "jpg"], weights)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.jpg", "c.gif"]
    result = run([str(root / "*.mp4"), "-o", str(tmp_path / "globbed")], weights)  # a quoted glob
    assert result.exit_code == 0 and [p.name for p in (tmp_path / "globbed").iterdir()] == ["a.mp4"]


def test_stylize_video_api_reports_progress(tmp_path):
    from styler.inference.stylizer import Stylizer

    src = make_clip(tmp_path / "clip.mp4", frames=10, audio=False)
    seen = []
    n = Stylizer(Generator(TINY)).stylize_video(src, tmp_path / "out.mov", VideoConfig(batch_size=4),
                                                on_frame=lambda done, total: seen.append((done, total)))
    assert n == 10 and seen[0] == (0, 10) and seen[-1] == (10, 10)
    assert probe(tmp_path / "out.mov")["frames"] == 10


def test_a_video_with_a_still_style_suggests_its_video_variant(tmp_path):
    from click.testing import CliRunner

    from styler.cli import main

    src = make_clip(tmp_path / "clip.mp4", frames=2, audio=False)

    def apply(style, *global_options):
        return CliRunner().invoke(main, [*global_options, "apply", str(src), "--style", style, "--device", "cpu",
                                         "--overwrite", "--weights-dir", str(tmp_path / "none")],
                                  catch_exceptions=False)

    result = apply("starry")
    assert result.exit_code == 0, result.output
    assert "tip: starry-video is trained for video" in result.stderr
    for style, options in (("starry-video", ()), ("starry", ("-q",))):
        result = apply(style, *options)
        assert result.exit_code == 0 and "tip:" not in result.stderr, result.output

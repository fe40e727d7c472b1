"""Animated GIF / WebP / PNG: every frame stylized, durations, loop and disposal kept."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.media import make_gif, run

def frames_of(path):
    with Image.open(path) as image:
        out = []
        for i in range(getattr(image, "n_frames", 1)):
            image.seek(i)
            image.load()
            out.append((image.info.get("duration"), getattr(image, "disposal_method", None), image.size))
        return out, image.info.get("loop"), image.format


@pytest.mark.parametrize("loop", [0, 3, None])
def test_gif_durations_loop_and_disposal_kept(tmp_path, weights, loop):
    src = make_gif(tmp_path / "anim.gif", frames=4, durations=(100, 250, 60, 400), loop=loop, disposal=(1, 2, 1, 2))
    result = run([str(src)], weights)
    assert result.exit_code == 0, result.output
    before, after = frames_of(src), frames_of(tmp_path / "anim_demo.gif")
    assert after == before and len(after[0]) == 4
    assert [d for d, _, _ in after[0]] == [100, 250, 60, 400] and after[1] == loop
    with Image.open(src) as a, Image.open(tmp_path / "anim_demo.gif") as b:
        assert a.convert("RGB").tobytes() != b.convert("RGB").tobytes()  # it was stylized


def test_animated_webp_and_png(tmp_path, weights):
    webp = make_gif(tmp_path / "anim.webp", frames=3, durations=(80, 120, 200), loop=2, lossless=True)
    png = make_gif(tmp_path / "anim.png", frames=3, durations=(50, 50, 300), loop=0)
    assert run([str(webp)], weights).exit_code == 0
    gif = make_gif(tmp_path / "g.gif", frames=3, durations=(70, 90, 110), loop=0)
    assert run([str(gif), "-o", str(tmp_path / "g.webp")], weights).exit_code == 0  # GIF -> animated WebP
    frames, loop, fmt = frames_of(tmp_path / "g.webp")
    assert fmt == "WEBP" and [d for d, _, _ in frames] == [70, 90, 110] and loop == 0
    assert run([str(png), "-o", str(tmp_path / "anim.gif")], weights).exit_code == 0
    frames, loop, fmt = frames_of(tmp_path / "anim_demo.webp")
    assert fmt == "WEBP" and [d for d, _, _ in frames] == [80, 120, 200] and loop == 2
    frames, loop, fmt = frames_of(tmp_path / "anim.gif")
    assert fmt == "GIF" and [d for d, _, _ in frames] == [50, 50, 300] and loop == 0


def test_static_gif_is_an_image(tmp_path, weights):
    Image.new("RGB", (30, 20), "red").save(tmp_path / "still.gif")
    assert run([str(tmp_path / "still.gif")], weights).exit_code == 0
    # A still GIF is an image; its 256-colour palette would band a stylized picture: PNG out.
    with Image.open(tmp_path / "still_demo.png") as out:
        assert out.format == "PNG" and out.size == (30, 20) and not getattr(out, "is_animated", False)


def test_transparent_gif_keeps_its_transparency(tmp_path, weights):
    frames = []
    for i in range(3):
        frame = Image.new("RGBA", (24, 16), (0, 0, 0, 0))
        frame.paste((200, 40 * i, 90, 255), (4 + i, 4, 14 + i, 12))
        frames.append(frame)
    frames[0].save(tmp_path / "t.gif", save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=2)
    assert run([str(tmp_path / "t.gif")], weights).exit_code == 0
    with Image.open(tmp_path / "t_demo.gif") as out:
        assert out.n_frames == 3
        assert out.convert("RGBA").getpixel((0, 0))[3] == 0  # the transparent corner stayed transparent


def test_animation_to_a_still_format_is_refused(tmp_path, weights):
    src = make_gif(tmp_path / "anim.gif")
    result = run([str(src), "-o", str(tmp_path / "out.jpg")], weights)
    assert result.exit_code == 1 and "write an animation as one of .gif, .png, .webp" in result.output
    assert not (tmp_path / "out.jpg").exists()

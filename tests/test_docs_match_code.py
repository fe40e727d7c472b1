"""What README.md and docs/ say that the code can check: every command they show names a real
command and real options, the option tables list each command's options, CI runs the README's
test command, and the tiling figures are the code's."""

import re
import shlex
from pathlib import Path

import click
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from styler.cli.app import main
from styler.config import GeneratorConfig, Upsample
from styler.inference.tiling import GlobalStatsGenerator
from styler.nn import Generator

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE = " ".join((ROOT / "docs" / "performance.md").read_text().split())
USAGE = " ".join((ROOT / "docs" / "usage.md").read_text().split())
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _tiling_cost(config: GeneratorConfig) -> tuple[list[int], int, int, list[int], int, int]:
    """Multiply-adds per input pixel of exact tiling's passes (styler.inference.tiling): a prefix
    pass up to each encoder norm but the last, the build of the last norm's input, the residual
    blocks, a prefix pass up to each decoder norm, the final decoder pass; and one untiled forward."""
    g = Generator(config)
    encoder, _, decoder = g.stages()
    pixels, reached = 256 * 256, {}

    def norms(layers: list[nn.Module]) -> list[nn.Module]:
        return [m for layer in layers for m in layer.modules() if isinstance(m, nn.InstanceNorm2d)]

    def note(module: nn.Module, _) -> None:
        reached[module] = counter.get_total_flops() // 2 // pixels

    with FlopCounterMode(display=False) as counter:
        for module in [*norms(encoder), decoder[0], *norms(decoder)]:
            module.register_forward_pre_hook(note)
        g(torch.rand(1, 3, 256, 256))
    untiled = counter.get_total_flops() // 2 // pixels
    *prefix, build = (reached[m] for m in norms(encoder))
    start = reached[decoder[0]]
    return prefix, build, start - build, [reached[m] - start for m in norms(decoder)], untiled - start, untiled


def test_tiling_arithmetic_is_the_default_generators():
    config = GeneratorConfig()
    prefix, build, blocks, decoder_prefix, final, untiled = _tiling_cost(config)
    tiled = sum(prefix) + build + blocks + sum(decoder_prefix) + final
    joined = " + ".join
    assert (f"encoder {joined(map(str, prefix))} (prefix passes) + {build} (build), residual blocks {blocks} "
            f"({config.num_residual} x {blocks // config.num_residual}), decoder {joined(map(str, decoder_prefix))} "
            f"(prefix passes) + {final} (final) = about {tiled} against {untiled} for one untiled forward"
            in PERFORMANCE)
    assert f"about {tiled / untiled:.2f}x the compute" in PERFORMANCE
    assert f"about {tiled / untiled:.2f} times the multiply-adds" in USAGE


def test_stripe_halos_are_the_codes():
    for upsample in (Upsample.BILINEAR, Upsample.NEAREST):
        tiler = GlobalStatsGenerator(Generator(GeneratorConfig(upsample=upsample)))
        assert (f"{tiler.encoder_halo} px above and below an encoder stripe and {tiler.decoder_halo} "
                f"low-resolution rows around a decoder stripe (the default bilinear decoder and "
                f"`--upsample nearest` alike)" in PERFORMANCE)


def _code_lines(page: Path) -> list[str]:
    """The lines of a page's code blocks (indented by 4 spaces, or fenced), a line ending in a
    backslash joined with the next as the shell joins them."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif lines and lines[-1].endswith("\\") and (fenced or line.startswith("    ")):
            lines[-1] = f"{lines[-1][:-1]} {line.strip()}"
        elif fenced or line.startswith("    "):
            lines.append(line.strip())
    return lines


def _styler_args(line: str) -> list[list[str]]:
    """The arguments of each ``styler ...`` (or ``python -m styler``, ``torchrun ... -m styler``)
    command on a shell line, comments dropped."""
    found = []
    for part in re.split(r"&&|\|\||;", line):
        part = part.strip()
        if not (part.startswith("styler ") or re.search(r"-m styler( |$)", part)):
            continue
        words = shlex.split(part, comments=True)
        start = 1 if words[0] == "styler" else words.index("styler", words.index("-m")) + 1
        found.append(words[start:])
    return found


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params if isinstance(param, click.Option)
            for opt in (*param.opts, *param.secondary_opts)}


def _check(args: list[str]) -> str | None:
    """Why ``styler <args>`` names no real command or option, or None."""
    while args and args[0].startswith("-"):
        if args[0] not in _options(main) | {"--help", "-h"}:
            return f"no global option {args[0]}"
        args = args[1:]
    if not args:
        return None
    command = main.commands.get(args[0])
    if command is None:
        return f"no command {args[0]}"
    known = _options(command) | {"--help", "-h"}
    unknown = [w.split("=")[0] for w in args[1:] if w.startswith("-") and w.split("=")[0] not in known
               and not re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", w)]
    return f"styler {args[0]} has no option {', '.join(unknown)}" if unknown else None


def test_every_command_in_the_docs_names_real_commands_and_options():
    shown, wrong = 0, []
    for page in PAGES:
        for line in _code_lines(page):
            for args in _styler_args(line):
                shown += 1
                if (why := _check(args)) is not None:
                    wrong.append(f"{page.relative_to(ROOT)}: {line}: {why}")
    assert shown > 50 and not wrong, "\n".join(wrong)


def test_the_checker_catches_a_wrong_command():
    assert _check(["train", "--style", "a.jpg", "--budget", "5m"]) is None
    assert _check(["-q", "apply", "a.jpg", "--style", "starry", "--strength=0.5"]) is None
    assert _check(["train", "--stepz", "9"]) == "styler train has no option --stepz"
    assert _check(["paint", "a.jpg"]) == "no command paint"
    assert _styler_args("pip install -e . && styler apply a.jpg --style starry  # note") == \
        [["apply", "a.jpg", "--style", "starry"]]
    assert _styler_args("torchrun --nproc_per_node=4 -m styler train --steps 9") == [["train", "--steps", "9"]]


def _table_options(page: Path) -> set[str]:
    """Options named in the first cell of the page's option tables (rows starting ``| `-``)."""
    cells = [line.split("|")[1] for line in page.read_text().splitlines() if line.startswith("| `-")]
    return {opt for cell in cells for opt in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", cell)}


@pytest.mark.parametrize("command, pages", [("train", ["training.md"]), ("apply", ["usage.md", "video.md"])])
def test_option_tables_list_exactly_the_commands_options(command, pages):
    """A table row for an option the command lacks is wrong; an option no row names is undocumented."""
    tabled = set().union(*(_table_options(ROOT / "docs" / page) for page in pages))
    options = _options(main.commands[command]) - {"--help", "-h", "-q", "--quiet", "-v", "--verbose"}
    assert tabled - _options(main.commands[command]) == set(), "rows for options that do not exist"
    assert options - tabled == set(), "options with no row"


def _set_up_commands() -> tuple[str, str]:
    """The README's two set-up commands: the one after "Install and run the main job", the one
    after "Install and run the tests"."""
    text = (ROOT / "README.md").read_text()

    def after(heading: str) -> str:
        rest = text[text.index(heading):]
        return next(line.strip() for line in rest.splitlines()[1:] if line.startswith("    "))

    return after("Install and run the main job"), after("Install and run the tests")


def test_ci_runs_the_readme_test_command_verbatim():
    _, test_command = _set_up_commands()
    assert "pytest" in test_command
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci


def test_readme_main_command_is_the_one_test_bundled_runs():
    main_command, _ = _set_up_commands()
    assert main_command == ("pip install -e . && styler apply samples/content/astronaut.jpg --style starry "
                            "-o out/astronaut_starry.jpg")

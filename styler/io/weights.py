"""Generator weights files: safetensors ``state_dict`` plus JSON-able metadata.

safetensors stores raw tensors and a string header, so loading a file can never execute code
(unlike ``torch.load`` of a pickle). The architecture config travels in the metadata, so a
file is self-describing and a mismatch is caught before any tensor is copied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from styler._version import __version__
from styler.config import FORMAT_VERSION, HEAD_START, NO_INIT, GeneratorConfig, default_weights_dir, from_dict, \
    to_json
from styler.errors import ConfigError, WeightsError
from styler.io.files import atomic_path

WEIGHTS_SUFFIX = ".safetensors"
# Generator fields a weights file may lack, with the value every file that lacks it was built
# with: the bundled matisse and matisse-video hold no num_downsamples and have three halvings.
_ABSENT_GENERATOR_FIELDS = {"num_downsamples": 3}
HEAD_START_ROLE = "head-start"  # metadata "role" of the generator new VGG styles start from


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says about itself."""

    path: Path
    generator: GeneratorConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("style_name") or self.path.stem)

    @property
    def features(self) -> str:
        return str(self.metadata.get("features", "unknown"))

    @property
    def loss_network(self) -> str:
        """The loss network in brief, ``vgg16 (caffe)``; ``features_source`` names its file too."""
        source = self.metadata.get("vgg_weights")
        if isinstance(source, dict) and source.get("kind") not in (None, "random") and source.get("preprocess"):
            return f"{source['kind']} ({source['preprocess']})"
        return self.features

    @property
    def head_start(self) -> bool:
        """The shared generator new styles start from, not a style of its own."""
        return self.metadata.get("role") == HEAD_START_ROLE

    @property
    def steps_trained(self) -> int:
        # Files from before steps_trained recorded the last step as "steps".
        return int(self.metadata.get("steps_trained", self.metadata.get("steps", 0)))

    @property
    def lineage_steps(self) -> int:
        """Steps trained into this generator, counting the styles it started from (``init_from``)
        but not the head start's pre-training; recorded when it was trained."""
        if self.head_start:
            return 0
        return int(self.metadata.get("lineage_steps", self.steps_trained))


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_save_file(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """safetensors ``save_file`` into a temp file beside ``path``, then rename over it."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def save_generator(path: Path, model: torch.nn.Module, metadata: dict[str, Any]) -> Path:
    """Write a generator (its ``config`` and ``state_dict``) with ``metadata`` (values JSON-encoded
    unless already strings)."""
    header = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()}
    header.update({
        "format": "styler-generator",
        "format_version": str(FORMAT_VERSION),
        "generator_config": to_json(model.config),
        "styler_version": __version__,
    })
    header.setdefault("created_utc", utc_now())
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    atomic_save_file(state, header, path)
    return Path(path)


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def read_info(path: Path) -> WeightsInfo:
    """Read and validate a weights file's header without loading tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from exc
    if raw.get("format") != "styler-generator":
        raise WeightsError(f"{path}: not a styler generator file (no styler metadata)")
    version = raw.get("format_version")
    if version != str(FORMAT_VERSION):
        raise WeightsError(f"{path}: format version {version} is not supported "
                           f"by styler {__version__} (expects {FORMAT_VERSION})")
    try:
        fields = {**_ABSENT_GENERATOR_FIELDS, **json.loads(raw["generator_config"])}
        config = from_dict(GeneratorConfig, fields)
    except (KeyError, json.JSONDecodeError, ConfigError) as exc:
        raise WeightsError(f"{path}: bad generator config in metadata ({exc})") from exc
    metadata = {k: _decode(v) for k, v in raw.items()}
    return WeightsInfo(path=path, generator=config, metadata=metadata)


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    """A weights file's tensors (no pickle) and header, checked to be finite; the generator that
    holds them is built by :func:`styler.nn.generator.load_generator`."""
    from safetensors.torch import load_file

    info = read_info(path)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise WeightsError(f"{path}: corrupted weights ({exc})") from exc
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise WeightsError(f"{path}: weights contain NaN or infinite values")
    return state, info


def list_weights(directory: Path | None = None) -> list[WeightsInfo | WeightsError]:
    """Every ``*.safetensors`` in ``directory``: its info, or the error that reading it gave."""
    directory = Path(directory) if directory is not None else default_weights_dir()
    if not directory.is_dir():
        return []
    found: list[WeightsInfo | WeightsError] = []
    for path in sorted(directory.glob(f"*{WEIGHTS_SUFFIX}")):
        try:
            found.append(read_info(path))
        except WeightsError as exc:
            found.append(exc)
    return found


def short_reason(error: Exception, path: Path) -> str:
    """The gist of a weights error for one table row: without the path, the first clause only."""
    text = str(error).removeprefix(f"{path}: ")
    return text.split(" (", 1)[0]


_PACKAGE = Path(__file__).resolve().parent.parent  # styler/, this file is styler/io/weights.py
# Read when it exists, after your weights folder: styles trained into the working folder, or a
# project's own. Never written to by default.
LOCAL_WEIGHTS = Path("weights")
YOURS, LOCAL, BUNDLED = "yours", "./weights", "bundled"  # where a style comes from, as `styles` says


def bundled_dir() -> Path:
    """The styles shipped inside the package (``styler/weights/``), wherever it is installed."""
    return _PACKAGE / "weights"


def is_bundled_dir(folder: Path) -> bool:
    """True for the package's own styles folder, also through a link (a clone's ``weights``)."""
    return Path(folder).resolve() == bundled_dir().resolve()


def bundled_style(name: str) -> Path | None:
    """The bundled style file called ``name``, if there is one."""
    path = bundled_dir() / f"{name}{WEIGHTS_SUFFIX}"
    return path if path.is_file() else None


@dataclass(frozen=True)
class Style:
    """One style a name can pick: yours, one in ``./weights``, or one bundled with the package."""

    path: Path
    source: str  # YOURS, LOCAL or BUNDLED
    info: WeightsInfo | None = None
    error: WeightsError | None = None
    hidden_by: str = ""  # the source of a style of the same name found first, which a name picks

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def bundled(self) -> bool:
        return self.source == BUNDLED

    @property
    def shadowed(self) -> bool:
        return bool(self.hidden_by)


def search_dirs(directory: Path | None = None) -> list[tuple[str, Path]]:
    """(source, folder) where style names are looked up, in order: your weights folder
    (``directory``, default :func:`styler.config.default_weights_dir`), ``./weights`` when it
    exists, the bundled styles. A folder met twice counts once, and the bundled folder is always
    the bundled one (a clone's ``weights`` links to it)."""
    candidates = [(YOURS, Path(directory) if directory is not None else default_weights_dir()),
                  (LOCAL, LOCAL_WEIGHTS), (BUNDLED, bundled_dir())]
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for source, folder in candidates:
        key = folder.resolve()
        if (source == LOCAL and not folder.is_dir()) or key in seen or (source != BUNDLED and is_bundled_dir(folder)):
            continue
        seen.add(key)
        found.append((source, folder))
    return found


def _styles_in_search_order(directory: Path | None) -> list[Style]:
    styles: list[Style] = []
    first: dict[str, str] = {}  # style name -> the source a name picks
    for source, root in search_dirs(directory):
        if not root.is_dir():
            continue
        for path in sorted(root.glob(f"*{WEIGHTS_SUFFIX}")):
            try:
                info, error = read_info(path), None
            except WeightsError as exc:
                info, error = None, exc
            styles.append(Style(path, source, info, error, hidden_by=first.get(path.stem, "")))
            first.setdefault(path.stem, source)
    return styles


def list_styles(directory: Path | None = None) -> list[Style]:
    """Every style a name can pick, sorted by name: yours (``directory``, default
    ``$STYLER_WEIGHTS_DIR`` or the data folder's ``weights``), those in ``./weights`` and the
    bundled ones. A style hides the later ones of its name (``hidden_by``); a file that cannot
    be read is listed with its ``error``."""
    return sorted(_styles_in_search_order(directory), key=lambda style: style.name)  # stable: search order


def _no_such_style(name: str, directory: Path | None) -> WeightsError:
    """One line: the folders searched, the close names (if any) and every usable name."""
    import difflib

    usable = sorted({style.name for style in _styles_in_search_order(directory) if style.error is None})
    folders = ", ".join("the bundled styles" if source == BUNDLED else str(folder)
                        for source, folder in search_dirs(directory))
    by_key = {style.casefold(): style for style in usable}
    close = [by_key[key] for key in difflib.get_close_matches(name.casefold(), list(by_key), n=3)]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return WeightsError(f"no style named {name!r} in {folders}; {hint}available: {', '.join(usable) or 'none'}; "
                        f"pass a .safetensors path or train one with 'styler train'")


def resolve_weights(name_or_path: str, directory: Path | None = None) -> Path:
    """A path to an existing file is used as is; otherwise the style of that name (exactly, else
    in any case) from the first folder of :func:`search_dirs` that has it."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    if candidate.suffix == WEIGHTS_SUFFIX or len(candidate.parts) > 1:
        raise WeightsError(f"{name_or_path}: no such weights file")
    for _, root in search_dirs(directory):
        if (root / f"{name_or_path}{WEIGHTS_SUFFIX}").is_file():
            return root / f"{name_or_path}{WEIGHTS_SUFFIX}"
    key = str(name_or_path).casefold()
    for style in _styles_in_search_order(directory):
        if style.name.casefold() == key and not style.shadowed:
            return style.path
    raise _no_such_style(str(name_or_path), directory)


def head_start_path() -> Path:
    """The painter's head start shipped in the package: a generator pre-trained across many
    paintings (scripts/pretrain_head_start.py), where new ImageNet-feature styles start."""
    return bundled_dir() / "pretrained" / f"head_start{WEIGHTS_SUFFIX}"


def _head_start_error(reason: str) -> WeightsError:
    return WeightsError(f"the painter's head start {reason}; reinstall styler, or train from scratch with "
                        f"init_from {NO_INIT!r} (styler train --init-from {NO_INIT})")


def resolve_init(name_or_path: str, weights_dir: Path | None = None) -> Path:
    """The weights file a run starts from: the head start for ``HEAD_START``, else as
    :func:`resolve_weights`."""
    if name_or_path != HEAD_START:
        return resolve_weights(name_or_path, weights_dir)
    path = head_start_path()
    if not path.is_file():
        raise _head_start_error(f"is missing ({path})")
    return path


def read_init_info(name_or_path: str, weights_dir: Path | None = None) -> WeightsInfo:
    """The header of the file a run starts from; a damaged head start names the way out."""
    path = resolve_init(name_or_path, weights_dir)
    try:
        return read_info(path)
    except WeightsError as exc:
        if name_or_path != HEAD_START:
            raise
        raise _head_start_error(f"cannot be read ({exc})") from exc


def init_architecture(name_or_path: str, weights_dir: Path | None = None) -> GeneratorConfig:
    """The generator architecture stored in a weights file's header (``--init-from``)."""
    return read_init_info(name_or_path, weights_dir).generator

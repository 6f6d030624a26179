"""Strict weight loading: a checkpoint must fill every weight of its family's model and nothing else.

transformers' `from_pretrained` only warns about missing weights (they are initialised at random) and
unexpected ones (dropped), so a DistilBERT folder loaded as `CLIPModel` used to export a random model.
Here any missing, unexpected or shape-mismatched weight is a `ConfigError` naming the family and the first
keys; a checkpoint that cannot even be read or built becomes one too (no traceback).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

from zsclip.errors import ConfigError

logger = logging.getLogger(__name__)
FIRST_KEYS = 3
# Buffers that older library versions saved and newer ones re-create (never learned weights).
IGNORED_SUFFIXES = ("position_ids", "num_batches_tracked")


def first_keys(keys: Iterable[str]) -> str:
    ordered = sorted(keys)
    more = f" (+{len(ordered) - FIRST_KEYS} more)" if len(ordered) > FIRST_KEYS else ""
    return ", ".join(ordered[:FIRST_KEYS]) + more


def refuse_mismatch(family: str, where: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                    mismatched: Iterable[str] = ()) -> None:
    """Raise ConfigError if any key is missing, unexpected or of another shape.

    Raises:
        ConfigError: one line naming the family, the checkpoint and the first offending keys.
    """
    missing = [k for k in missing if not k.endswith(IGNORED_SUFFIXES)]
    unexpected = [k for k in unexpected if not k.endswith(IGNORED_SUFFIXES)]
    mismatched = list(mismatched)
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing weights ({first_keys(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights ({first_keys(unexpected)})")
    if mismatched:
        parts.append(f"{len(mismatched)} weights of another shape ({first_keys(mismatched)})")
    raise ConfigError(f"{where} is not a {family} checkpoint: {'; '.join(parts)}; pass the right --family")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' own loading report (a table of missing keys) would duplicate our one-line error, and its
    "Loading weights" progress bar is noise in a one-line-error CLI."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def check_model_type(family: str, folder: Path, accepted: Sequence[str]) -> Dict[str, Any]:
    """config.json of `folder`, whose model_type must be one of `accepted`.

    Raises:
        ConfigError: no readable config.json, or another model_type.
    """
    from zsclip_export.families import read_json

    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{folder} is not a {family} checkpoint: no config.json")
    config = read_json(config_path)
    if config.get("model_type") not in accepted:
        raise ConfigError(f"{config_path}: model_type {config.get('model_type')!r} is not a {family} checkpoint "
                          f"(expected {' or '.join(repr(a) for a in accepted)}); pass the right --family")
    return config


def from_pretrained_strict(cls: Any, folder: Path, family: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder)` that refuses any missing / unexpected / mismatched weight.

    Raises:
        ConfigError: unreadable checkpoint or weights that do not fit `cls`.
    """
    kwargs.setdefault("ignore_mismatched_sizes", True)  # so that the keys of another shape are reported, not raised
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder}: not a loadable {family} checkpoint ({first_line(exc)})") from None
    refuse_mismatch(family, str(folder), info.get("missing_keys", ()), info.get("unexpected_keys", ()),
                    [entry[0] if isinstance(entry, tuple) else str(entry) for entry in info.get("mismatched_keys", ())])
    return model.eval()


def load_state_strict(module: Any, state: Dict[str, Any], family: str, where: str, prefix: Optional[str] = None) -> None:
    """`module.load_state_dict(state)` that refuses any missing / unexpected / mismatched weight.

    Raises:
        ConfigError: the keys or shapes do not fit.
    """
    if prefix:
        state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    refuse_mismatch(family, where, [k for k in own if k not in state], [k for k in state if k not in own], mismatched)
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def read_state_dict(folder: Path, names: Sequence[str], family: str) -> Dict[str, Any]:
    """The first of `names` in `folder` (safetensors or a torch pickle) as a state dict.

    Raises:
        ConfigError: none of the files exists, or it cannot be read.
    """
    import torch

    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            continue
        state: Any
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and safetensors errors come in many types; all mean "unreadable"
            raise ConfigError(f"{path}: unreadable {family} weights ({first_line(exc)})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ConfigError(f"{path}: not a state dict")
        return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    raise ConfigError(f"{folder}: no weights file ({' or '.join(names)}) for the {family} family")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__

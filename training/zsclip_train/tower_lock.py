"""Locking a transformers tower with open_clip's semantics (`--lock-image`, `--lock-image-unlocked-groups`,
`--lock-text-unlocked-layers`, `--lock-*-freeze-layer-norm`).

A transformer tower is read as stem (modules registered before the encoder: embeddings, CLIP's pre-layernorm),
blocks (the encoder's layer list) and head (modules after it: final / post layernorm, pooler, attention-pool
head). `lock_tower(model, unlocked_layers=k)` freezes the stem and all blocks but the last k; with k > 0 the
head stays trainable too ("last k blocks + final norm"); k = 0 freezes everything. With
`freeze_layer_norm=False` the LayerNorms inside the frozen part stay trainable (open_clip's default for text).
"""

from __future__ import annotations

from typing import List, Tuple

from torch import nn
from zsclip.errors import ConfigError


def find_blocks(model: nn.Module) -> Tuple[nn.Module, str, nn.ModuleList]:
    """(root, name of the encoder child inside root, layer list): the longest ModuleList is the block stack.

    Raises:
        ConfigError: no ModuleList of blocks found.
    """
    lists = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.ModuleList)]
    if not lists:
        raise ConfigError(f"{type(model).__name__}: no list of transformer blocks found; cannot lock by layers")
    name, blocks = max(lists, key=lambda item: (len(item[1]), -item[0].count(".")))
    parts = name.split(".")
    if len(parts) < 2:
        return model, parts[0], blocks
    root = model.get_submodule(".".join(parts[:-2])) if len(parts) > 2 else model
    return root, parts[-2], blocks


def head_modules(root: nn.Module, encoder_name: str) -> List[nn.Module]:
    """Children of `root` registered after the encoder (final norm, pooler, head)."""
    names = [name for name, _ in root.named_children()]
    after = names[names.index(encoder_name) + 1:] if encoder_name in names else []
    return [root.get_submodule(name) for name in after]


def lock_tower(model: nn.Module, unlocked_layers: int = 0, freeze_layer_norm: bool = True,
               key: str = "unlocked layers") -> None:
    """Freeze `model` except its last `unlocked_layers` blocks (+ the head when that is > 0).

    Raises:
        ConfigError: more unlocked layers than blocks, or no block list.
    """
    if unlocked_layers < 0:
        raise ConfigError(f"{key} must be >= 0, got {unlocked_layers}")
    model.requires_grad_(False)
    if not freeze_layer_norm:
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)
    if unlocked_layers == 0:
        return
    root, encoder_name, blocks = find_blocks(model)
    if unlocked_layers > len(blocks):
        raise ConfigError(f"{key} = {unlocked_layers}, but {type(model).__name__} has {len(blocks)} blocks "
                          f"(use 1..{len(blocks)})")
    for block in list(blocks)[-unlocked_layers:]:
        block.requires_grad_(True)
    for module in head_modules(root, encoder_name):
        module.requires_grad_(True)


def is_locked(model: nn.Module) -> bool:
    """True when no parameter of `model` is trainable (it then runs in eval mode under no_grad)."""
    return not any(p.requires_grad for p in model.parameters())

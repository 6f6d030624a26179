"""Recipe of the text head shipped in `zsclip_export/data/`: the default build's alignment fit, run once.

    python -m zsclip_export.text_head_data        # fits (~10 CPU minutes), writes data/text_head-KEY.npz

The file holds only the head's weights (two linear layers, the skip projection and the logit scale: 2.0 M float32)
with the fit's final loss and phrase count. Its name is `build_cache.head_key` of the inputs (vocabulary,
image prototypes, label table, `AlignConfig`, the fitting code, torch version), so `zsclip-export` uses it only
when it would compute exactly these inputs; otherwise it fits. The slow test
`tests/export/test_text_head_data.py` re-runs this recipe and compares.
"""

from __future__ import annotations

import sys
from typing import Any, Tuple

from zsclip_export.default_model import ExportConfig


def default_prototypes(cfg: ExportConfig) -> Any:
    from zsclip_export.image_tower import ConceptImageTower, load_backbone

    return ConceptImageTower(load_backbone(cfg.backbone)[0]).prototypes.numpy().copy()


def default_head_key(cfg: ExportConfig, prototypes: Any = None, parts: Any = None) -> str:
    """The key `zsclip-export` looks the head up by, for `cfg` (cheap: hashes only, no vocabulary build; `parts`:
    `build_cache.vocabulary_parts` for `cfg` when the caller has them)."""
    from zsclip_train.align import AlignConfig
    from zsclip_train.labels import default_table_path
    from zsclip_train.vocab import VocabConfig, find_navec_file

    from zsclip_export import build_cache

    if parts is None:
        parts = build_cache.vocabulary_parts(find_navec_file(), VocabConfig(size=cfg.vocab_size))
    prototypes = default_prototypes(cfg) if prototypes is None else prototypes
    return build_cache.head_key(parts, prototypes, default_table_path(), AlignConfig(epochs=cfg.align_epochs))


def default_head_inputs(cfg: ExportConfig) -> Tuple[Any, Any, list, Any, str]:
    """(text tower with a fresh head, tokenizer, label rows, AlignConfig, head key) as `zsclip-export` builds them."""
    from zsclip_train.align import AlignConfig
    from zsclip_train.labels import load_label_table
    from zsclip_train.text_tower import NavecTextTower
    from zsclip_train.vocab import VocabConfig, build_tokenizer, find_navec_file

    from zsclip_export import build_cache

    prototypes = default_prototypes(cfg)
    navec_path, vocab_cfg = find_navec_file(), VocabConfig(size=cfg.vocab_size)
    parts = build_cache.vocabulary_parts(navec_path, vocab_cfg)
    vocab, _ = build_cache.cached_vocabulary(navec_path, vocab_cfg, cfg.cache_dir, parts)
    tower = NavecTextTower(vocab.vectors, vocab.token_row, vocab.token_weight, prototypes, vocab.token_is_piece,
                           vocab.token_length)
    align = AlignConfig(epochs=cfg.align_epochs)
    return tower, build_tokenizer(vocab), load_label_table(), align, default_head_key(cfg, prototypes, parts)


def fit_default_head(cfg: ExportConfig) -> Tuple[str, bytes]:
    """(head key, npz bytes) of the default build's final alignment fit."""
    from zsclip_train.align import final_fit

    from zsclip_export import build_cache

    tower, tokenizer, rows, align, key = default_head_inputs(cfg)
    final_loss, n_phrases = final_fit(tower, tokenizer, rows, align)
    return key, build_cache.head_to_bytes(tower, final_loss, n_phrases)


def main() -> None:
    from zsclip_export import build_cache

    key, data = fit_default_head(ExportConfig())
    folder = build_cache.shipped_heads_dir()
    for old in folder.glob("text_head-*.npz"):
        old.unlink()
    target = folder / f"{key}.npz"
    build_cache.write_atomic(target, lambda handle: handle.write(data))
    print(target, file=sys.stderr)


if __name__ == "__main__":
    main()

"""CLIP-family sources: what a loaded checkpoint hands to the exporter, family detection and dispatch.

Each family module (`clip_hf`, `siglip`, `ruclip`, `hf_two_tower`, `st_clip`, `mclip`, `open_clip_family`) turns a checkpoint folder into a
`SourceModel`: two torch towers with the runtime's ONNX signatures, a `tokenizers` tokenizer that
tokenizes like the source, the reference tokenizer itself (for the identity check) and the manifest
sections that describe preprocessing, text inputs and scoring exactly as the source defines them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from zsclip.errors import ConfigError
from zsclip.jsonfile import read_json_object
from zsclip.manifest import EmbeddingConfig, PreprocessConfig, TextConfig

logger = logging.getLogger(__name__)

FAMILIES = ("auto", "clip", "ruclip", "siglip", "two-tower", "sentence-transformers", "mclip", "open-clip")
# Families whose checkpoint has no image tower of its own: --image-source names it.
TEXT_ONLY_FAMILIES = ("sentence-transformers", "mclip")
OPEN_CLIP_CONFIG = "open_clip_config.json"
ST_MODULES = "modules.json"
TWO_TOWER_FILE = "two_tower.json"
TWO_TOWER_FORMAT = "zsclip-hf-two-tower"


@dataclass
class SourceModel:
    """A loaded source checkpoint, ready to export.

    image_tower: pixel_values [B, 3, H, W] float32 -> image embeddings [B, D] (not normalised).
    text_tower: (input_ids, attention_mask) int64 [B, L] -> text embeddings [B, D] (not normalised).
    tokenizer: a `tokenizers.Tokenizer` whose `encode(text).ids` equal the source's ids.
    reference_ids: the source's own tokenization (text -> ids), for the identity check.
    details: family-specific facts for the manifest's provenance (tokenizer kind, pooling, ...).
    """

    family: str
    source: str
    image_tower: Any
    text_tower: Any
    tokenizer: Any
    reference_ids: Callable[[str], List[int]]
    preprocess: PreprocessConfig
    text: TextConfig
    embedding: EmbeddingConfig
    details: Dict[str, Any] = field(default_factory=dict)


def manifest_fields(cls: Any, **wanted: Any) -> Dict[str, Any]:
    """The subset of `wanted` that the runtime's manifest dataclass `cls` has.

    The multilingual families declare manifest 1.3's exact-preprocessing and text-handling fields
    (size_rounding, rgb_conversion, jpeg_draft_factor, reducing_gap, label_cleaning, prompt_average) when the
    runtime knows them; with a 1.2 runtime they are left out and its defaults apply.
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in wanted.items() if k in names}


# Text handling of the multilingual families: the tokenizer.json normaliser already does the family's own text
# cleaning (sentence-transformers' strip, open_clip's ftfy/whitespace clean; M-CLIP passes the text unchanged),
# so the class name goes in unchanged; prompt ensembles average unit vectors (open_clip's zero-shot classifier).
UPSTREAM_TEXT = {"label_cleaning": "none", "prompt_average": "unit_mean"}


def resolve_source(source: str) -> Path:
    """A local checkpoint folder for `source` (a path, or a hub id fetched with huggingface_hub).

    Raises:
        ConfigError: not a folder and not downloadable.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ConfigError(f"--source {source}: not a checkpoint folder (nor a hub id like org/name)")
    try:
        from huggingface_hub import snapshot_download

        logger.info("downloading %s from the Hugging Face hub", source)
        return Path(snapshot_download(source))
    except Exception as exc:  # hub errors come in many types (offline, 404, auth); all mean "cannot fetch"
        raise ConfigError(f"--source {source}: not a local folder and the hub download failed ({exc})") from None


def read_json(path: Path) -> Dict[str, Any]:
    return read_json_object(path, ConfigError)


def detect_family(folder: Path) -> str:
    """The family of the checkpoint in `folder`: two-tower, ruclip, clip or siglip.

    Raises:
        ConfigError: no config, or a model type this exporter does not know.
    """
    folder = Path(folder)
    if (folder / TWO_TOWER_FILE).is_file():
        return "two-tower"
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return "open-clip"
    if (folder / ST_MODULES).is_file():
        return "sentence-transformers"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{folder}: no config.json (nor {TWO_TOWER_FILE}, {OPEN_CLIP_CONFIG}, {ST_MODULES}); "
                          "not a CLIP-family checkpoint")
    config = read_json(config_path)
    if (folder / "bpe.model").is_file() and "transformer_width" in config:
        return "ruclip"
    model_type = config.get("model_type")
    if model_type == "clip":
        return "clip"
    if model_type == "siglip":
        return "siglip"
    if model_type == "M-CLIP":
        return "mclip"
    raise ConfigError(
        f"{config_path}: model_type {model_type!r} is not supported (clip, siglip, M-CLIP, a ruCLIP folder with bpe.model, "
        f"a sentence-transformers {ST_MODULES} folder, an {OPEN_CLIP_CONFIG} folder, or a {TWO_TOWER_FILE} composite); "
        "pass --family to override"
    )


def load_source(source: str, family: str = "auto", image_source: Optional[str] = None) -> SourceModel:
    """Load `source` (folder or hub id) as `family` ("auto" detects it); `image_source` is the image tower's
    checkpoint for the text-only families (sentence-transformers, mclip).

    Raises:
        ConfigError: unknown family, unreadable checkpoint, unsupported preprocessing, a missing or
            superfluous image source.
    """
    if family not in FAMILIES:
        raise ConfigError(f"--family {family!r} is not one of {FAMILIES}")
    folder = resolve_source(source)
    chosen = detect_family(folder) if family == "auto" else family
    logger.info("loading %s as family %s", folder, chosen)
    if image_source is not None and chosen not in TEXT_ONLY_FAMILIES:
        raise ConfigError(f"--image-source is for the text-only families {TEXT_ONLY_FAMILIES}; {source} is family {chosen}, "
                          "which has its own image tower")
    if chosen == "sentence-transformers":
        from zsclip_export.st_clip import load_sentence_transformers

        model = load_sentence_transformers(folder, image_source)
    elif chosen == "mclip":
        from zsclip_export.mclip import load_mclip

        model = load_mclip(folder, image_source)
    elif chosen == "open-clip":
        from zsclip_export.open_clip_family import load_open_clip

        model = load_open_clip(folder)
    elif chosen == "clip":
        from zsclip_export.clip_hf import load_clip

        model = load_clip(folder)
    elif chosen == "siglip":
        from zsclip_export.siglip import load_siglip

        model = load_siglip(folder)
    elif chosen == "ruclip":
        from zsclip_export.ruclip import load_ruclip

        model = load_ruclip(folder)
    else:
        from zsclip_export.hf_two_tower import load_two_tower

        model = load_two_tower(folder)
    model.source = source
    return model


def check_tokenizer_identity(model: SourceModel, sentences: Sequence[str]) -> Dict[str, Any]:
    """Compare the exported tokenizer's ids with the source tokenizer's on `sentences`.

    Returns counts and the first mismatch (empty when identical).
    """
    mismatches = []
    for text in sentences:
        ours = model.tokenizer.encode(text).ids
        theirs = list(model.reference_ids(text))
        if ours != theirs:
            mismatches.append({"text": text, "exported": ours, "source": theirs})
    return {"sentences": len(sentences), "mismatches": len(mismatches), "first": mismatches[:1]}

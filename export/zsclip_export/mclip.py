"""M-CLIP (`M-CLIP/XLM-Roberta-Large-Vit-B-32` and kin): a multilingual text encoder distilled onto CLIP's text space.

Checkpoint layout (pip `multilingual-clip`, `pt_multilingual_clip.MultilingualCLIP`)::

    config.json          {"model_type": "M-CLIP", "modelBase": "xlm-roberta-large",
                          "transformerDimensions": 1024, "numDims": 512, ...}
    pytorch_model.bin    transformer.* (the modelBase AutoModel, with its pooler) + LinearTransformation.{weight,bias}
    tokenizer files      the modelBase tokenizer (XLM-R SentencePiece, tokenizer.json)

Upstream text embedding: `tokenizer(texts, padding=True)` (no truncation: the model's 512 positions bound it),
the encoder's last hidden state, mean over the attention mask, `LinearTransformation`. The architecture of
`transformer` is `AutoConfig(modelBase)`: a folder (relative to the checkpoint, or absolute) or a hub id whose
config.json alone is fetched. The image tower is the OpenAI CLIP the text model was trained against
(`--image-source openai/clip-vit-base-patch32` for the ViT-B/32 model).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from zsclip.errors import ConfigError
from zsclip.manifest import EmbeddingConfig, TextConfig

from zsclip_export.families import UPSTREAM_TEXT, SourceModel, manifest_fields
from zsclip_export.hf_preprocess import backend_tokenizer, finish_tokenizer, reference_ids_of
from zsclip_export.hf_two_tower import CompositeTextTower
from zsclip_export.image_source import load_image_source
from zsclip_export.strict_load import check_model_type, load_state_strict, quiet_transformers, read_state_dict

logger = logging.getLogger(__name__)
FAMILY = "mclip"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# The image model each published M-CLIP text model was trained against (from the M-CLIP model cards).
IMAGE_MODELS = {
    "XLM-Roberta-Large-Vit-B-32": "openai/clip-vit-base-patch32",
    "XLM-Roberta-Large-Vit-L-14": "openai/clip-vit-large-patch14",
    "LABSE-Vit-L-14": "openai/clip-vit-large-patch14",
}


def text_config_of(folder: Path, model_base: str) -> Any:
    """The encoder's transformers config: `model_base` as a local folder if there is one, else a hub id.

    Raises:
        ConfigError: neither readable locally nor fetchable.
    """
    from transformers import AutoConfig

    for candidate in (folder / model_base, Path(model_base).expanduser()):
        if (candidate / "config.json").is_file():
            return AutoConfig.from_pretrained(str(candidate))
    try:
        return AutoConfig.from_pretrained(model_base)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}/config.json: modelBase {model_base!r} is neither a folder with config.json nor a "
                          f"fetchable hub id ({str(exc).splitlines()[0][:200]})") from None


def load_mclip(folder: Path, image_source: Optional[str]) -> SourceModel:
    """An M-CLIP text checkpoint + the CLIP image tower it was trained against -> SourceModel.

    Raises:
        ConfigError: not an M-CLIP config, weights that do not fit, no or a mismatching image source.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    config = check_model_type(FAMILY, folder, ("M-CLIP",))
    try:
        model_base, width, dim = str(config["modelBase"]), int(config["transformerDimensions"]), int(config["numDims"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{folder}/config.json: an M-CLIP config needs modelBase, transformerDimensions, numDims ({exc})") from None
    text_config = text_config_of(folder, model_base)
    text_config._attn_implementation = "eager"
    encoder = AutoModel.from_config(text_config)
    projection = torch.nn.Linear(width, dim)
    holder = torch.nn.Module()
    holder.transformer, holder.LinearTransformation = encoder, projection
    load_state_strict(holder, read_state_dict(folder, WEIGHT_FILES, FAMILY), FAMILY, str(folder))
    try:
        with quiet_transformers():  # its "model of type M-CLIP" notice: the tokenizer is the modelBase's, as intended
            hf_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: no loadable tokenizer ({exc})") from None
    max_positions = int(getattr(text_config, "max_position_embeddings", 512))
    offset = int(getattr(text_config, "pad_token_id", 0) or 0) + 1 if text_config.model_type in ("xlm-roberta", "roberta") else 0
    context = min(int(hf_tokenizer.model_max_length), max_positions - offset)
    suggestion = IMAGE_MODELS.get(folder.name, "openai/clip-vit-base-patch32")
    image = load_image_source(image_source, FAMILY, suggestion)
    if dim != image.embedding.dim:
        raise ConfigError(f"{folder}: M-CLIP embedding dim {dim} differs from the image source's {image.embedding.dim}; "
                          f"pass the CLIP the text model was trained against (e.g. {suggestion})")
    return SourceModel(
        family=FAMILY,
        source=str(folder),
        image_tower=image.image_tower,
        text_tower=CompositeTextTower(encoder.eval(), projection.eval(), "mean").eval(),
        tokenizer=finish_tokenizer(backend_tokenizer(hf_tokenizer, str(folder)), context),
        reference_ids=reference_ids_of(hf_tokenizer, context),
        preprocess=image.preprocess,
        text=TextConfig(context_length=context, pad_id=int(hf_tokenizer.pad_token_id or 0), unk_id=hf_tokenizer.unk_token_id,
                        **manifest_fields(TextConfig, **UPSTREAM_TEXT)),
        embedding=EmbeddingConfig(dim=dim, norm="l2", logit_scale=image.embedding.logit_scale, logit_bias=0.0),
        details={
            "tokenizer": f"{type(hf_tokenizer).__name__} (tokenizers backend)",
            "text_model": f"{model_base} ({text_config.model_type}), {context} tokens",
            "text_pooling": f"mean over the attention mask -> LinearTransformation {width}->{dim}",
            "image_pooling": image.details["image_pooling"],
            "architecture": "M-CLIP text encoder + CLIP image tower",
        },
    )

"""sentence-transformers multilingual CLIP: a text repo (modules.json) + the image repo of its CLIP teacher.

Text repo layout (e.g. `sentence-transformers/clip-ViT-B-32-multilingual-v1`)::

    modules.json                 [Transformer (path "" or "0_Transformer"), Pooling ("1_Pooling"), Dense ("2_Dense"),
                                  optionally Normalize]
    config.json, model weights   the Transformer's AutoModel (DistilBERT multilingual for v1)
    sentence_bert_config.json    max_seq_length (128 for v1), do_lower_case
    tokenizer files
    1_Pooling/config.json        pooling_mode_mean_tokens / pooling_mode_cls_token (or "pooling_mode": "mean")
    2_Dense/config.json          in_features, out_features, bias, activation_function (768 -> 512, no bias, Identity)
    2_Dense/pytorch_model.bin    linear.weight [, linear.bias]   (or model.safetensors)

The text embedding is what `SentenceTransformer.encode` returns: tokens of the stripped (and, with
do_lower_case, lowercased) text truncated to max_seq_length, the encoder, masked mean (or CLS) pooling, the
Dense layers. The image tower comes from `--image-source` (`sentence-transformers/clip-ViT-B-32`, whose
`0_CLIPModel/` is a transformers CLIPModel: `get_image_features`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from zsclip.errors import ConfigError
from zsclip.manifest import EmbeddingConfig, TextConfig

from zsclip_export.families import UPSTREAM_TEXT, SourceModel, manifest_fields, read_json
from zsclip_export.hf_preprocess import backend_tokenizer, finish_tokenizer
from zsclip_export.image_source import load_image_source, st_modules
from zsclip_export.strict_load import from_pretrained_strict, load_state_strict, read_state_dict

logger = logging.getLogger(__name__)
FAMILY = "sentence-transformers"
ACTIVATIONS = {"Identity": torch.nn.Identity, "Tanh": torch.nn.Tanh}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class DenseLayer(torch.nn.Module):
    """sentence-transformers' Dense: activation(linear(x)), with the same state-dict keys (linear.*)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, activation: str) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features, bias=bias)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


class SentenceTextTower(torch.nn.Module):
    """(input_ids, attention_mask) -> Dense(...(pool(encoder states))), pooling "mean" (masked) or "cls"."""

    def __init__(self, encoder: Any, pooling: str, dense: List[DenseLayer]) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dense = torch.nn.Sequential(*dense) if dense else torch.nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = attention_mask.to(states.dtype).unsqueeze(-1)
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return self.dense(pooled)


def pooling_mode(config: Dict[str, Any], where: str) -> str:
    """The one pooling mode of a Pooling config ("mean" or "cls").

    Raises:
        ConfigError: another mode, or several at once.
    """
    if isinstance(config.get("pooling_mode"), str):
        modes = [config["pooling_mode"]]
    else:
        modes = [key[len("pooling_mode_"):] for key, value in config.items()
                 if key.startswith("pooling_mode_") and value is True]
    modes = ["mean" if m in ("mean", "mean_tokens") else "cls" if m in ("cls", "cls_token") else m for m in modes]
    if len(modes) != 1 or modes[0] not in ("mean", "cls"):
        raise ConfigError(f"{where}: pooling {modes} is not supported (one of mean, cls)")
    return modes[0]


def load_dense(folder: Path) -> DenseLayer:
    """A Dense module folder (config.json + weights), loaded strictly.

    Raises:
        ConfigError: unsupported activation, missing fields, weights that do not fit.
    """
    config = read_json(folder / "config.json")
    activation = str(config.get("activation_function", "torch.nn.modules.linear.Identity")).rsplit(".", 1)[-1]
    if activation not in ACTIVATIONS:
        raise ConfigError(f"{folder}/config.json: activation {activation!r} is not supported ({tuple(ACTIVATIONS)})")
    try:
        layer = DenseLayer(int(config["in_features"]), int(config["out_features"]), bool(config.get("bias", True)), activation)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{folder}/config.json: not a Dense config ({exc})") from None
    load_state_strict(layer, read_state_dict(folder, WEIGHT_FILES, FAMILY), f"{FAMILY} Dense", str(folder))
    return layer.eval()


def text_modules(folder: Path) -> Tuple[Path, str, List[DenseLayer], bool]:
    """(transformer folder, pooling, dense layers, normalised) from modules.json.

    Raises:
        ConfigError: a module this exporter cannot reproduce, or no Transformer / Pooling.
    """
    modules = st_modules(folder)
    kinds = [m["kind"] for m in modules]
    if "CLIPModel" in kinds:
        raise ConfigError(f"{folder} is a sentence-transformers CLIP image repo (CLIPModel module): pass it as "
                          "--image-source with the multilingual text repo as --source, or export its folder "
                          f"{folder / modules[kinds.index('CLIPModel')]['path']} as --family clip")
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Dense", "Normalize") for k in kinds[2:]):
        raise ConfigError(f"{folder}/modules.json: modules {kinds} are not supported "
                          "(Transformer, Pooling, then Dense / Normalize)")
    pooling = pooling_mode(read_json(folder / modules[1]["path"] / "config.json"), f"{folder / modules[1]['path']}")
    dense = [load_dense(folder / m["path"]) for m in modules[2:] if m["kind"] == "Dense"]
    return folder / modules[0]["path"], pooling, dense, "Normalize" in kinds


def sentence_tokenizer(transformer_dir: Path, context: int, lower: bool) -> Tuple[Any, Any]:
    """(transformers tokenizer, exported tokenizer): sentence-transformers strips (and may lowercase) every text."""
    from tokenizers import normalizers
    from transformers import AutoTokenizer

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{transformer_dir}: no loadable tokenizer ({exc})") from None
    tokenizer = finish_tokenizer(backend_tokenizer(hf_tokenizer, str(transformer_dir)), context)
    steps = [normalizers.Strip()] + ([normalizers.Lowercase()] if lower else [])
    if tokenizer.normalizer is not None:
        steps.append(tokenizer.normalizer)
    tokenizer.normalizer = normalizers.Sequence(steps)
    return hf_tokenizer, tokenizer


def load_sentence_transformers(folder: Path, image_source: Optional[str]) -> SourceModel:
    """A sentence-transformers multilingual text repo + its CLIP image repo -> SourceModel.

    Raises:
        ConfigError: unsupported modules, weights that do not fit, no or a mismatching image source.
    """
    from transformers import AutoModel

    transformer_dir, pooling, dense, normalised = text_modules(folder)
    st_path = transformer_dir / "sentence_bert_config.json"
    st_config = read_json(st_path) if st_path.is_file() else {}
    encoder = from_pretrained_strict(AutoModel, transformer_dir, f"{FAMILY} Transformer", attn_implementation="eager")
    max_positions = int(getattr(encoder.config, "max_position_embeddings", 512))
    context = int(st_config.get("max_seq_length") or max_positions)
    lower = bool(st_config.get("do_lower_case", False))
    hf_tokenizer, tokenizer = sentence_tokenizer(transformer_dir, min(context, max_positions), lower)
    context = min(context, max_positions, int(hf_tokenizer.model_max_length))
    image = load_image_source(image_source, FAMILY, "sentence-transformers/clip-ViT-B-32")
    dim = dense[-1].linear.out_features if dense else int(encoder.config.hidden_size)
    if dim != image.embedding.dim:
        raise ConfigError(f"{folder}: text embedding dim {dim} differs from the image source's {image.embedding.dim}; "
                          "this image source is not the one the text model was trained against")

    def reference_ids(text: str) -> list:
        text = text.strip().lower() if lower else text.strip()
        return list(hf_tokenizer(text, truncation=True, max_length=context)["input_ids"])

    return SourceModel(
        family=FAMILY,
        source=str(folder),
        image_tower=image.image_tower,
        text_tower=SentenceTextTower(encoder, pooling, dense).eval(),
        tokenizer=tokenizer,
        reference_ids=reference_ids,
        preprocess=image.preprocess,
        text=TextConfig(context_length=context, pad_id=int(hf_tokenizer.pad_token_id or 0), unk_id=hf_tokenizer.unk_token_id,
                        **manifest_fields(TextConfig, **UPSTREAM_TEXT)),
        embedding=EmbeddingConfig(dim=dim, norm="l2", logit_scale=image.embedding.logit_scale, logit_bias=0.0),
        details={
            "tokenizer": f"{type(hf_tokenizer).__name__} (tokenizers backend; text stripped{', lowercased' if lower else ''} "
                         "as sentence-transformers does)",
            "text_model": f"{encoder.config.model_type}, max_seq_length {context}",
            "text_pooling": f"{pooling} -> " + " -> ".join(
                f"Dense {d.linear.in_features}->{d.linear.out_features} {type(d.activation).__name__}" for d in dense)
                + (" (Normalize)" if normalised else ""),
            "image_pooling": image.details["image_pooling"],
            "architecture": "sentence-transformers text encoder + CLIP image tower",
        },
    )

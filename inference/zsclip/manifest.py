"""The model-directory contract: `zsclip.json` schema, reading, validation and writing.

A model directory holds::

    zsclip.json        this manifest
    image.onnx         image tower, FP32        (variant "fp32")
    text.onnx          text tower, FP32
    image.int8.onnx    image tower of variant "int8" (may be the FP32 file when the
    text.int8.onnx     fidelity gate kept that tower in FP32)
    tokenizer.json     a `tokenizers` tokenizer
    glossary.json      optional: definitions of words the text head was not taught (zsclip.glossary)

Export writes it (`write_manifest`), inference reads it (`load_manifest`); nobody edits it by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from zsclip.errors import ModelDirError
from zsclip.jsonfile import read_json_object

MANIFEST_NAME = "zsclip.json"
# 1.1: optional fixed_classes; 1.2: optional text.glossary_file; 1.3: optional preprocess.size_rounding,
# rgb_conversion, jpeg_draft, jpeg_draft_factor, reducing_gap, exact, resize mode "center_crop_resize", text.label_cleaning,
# text.prompt_average. Every 1.3 field defaults to the 1.2 behaviour.
FORMAT_VERSION = "1.3"
RESIZE_MODES = ("shortest_edge_center_crop", "squash", "center_crop_resize")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
SIZE_ROUNDINGS = ("round", "floor")
RGB_CONVERSIONS = ("white_background", "convert")
LABEL_CLEANINGS = ("nfc_collapse", "lower_strip", "none")
PROMPT_AVERAGES = ("unit_mean", "raw_mean")
NORMS = ("l2", "l1")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image becomes the image tower's NCHW float32 input.

    resize_mode:
        shortest_edge_center_crop  resize the short side to image_size, then crop the centre square
                                   (CLIP: transformers' image processor, torchvision Resize + CenterCrop)
        center_crop_resize         crop the centre square of the original, then resize it (ruCLIP:
                                   torchvision RandomResizedCrop(scale=(1, 1), ratio=(1, 1)) on a PIL image)
        squash                     resize to image_size x image_size, aspect ratio not kept (SigLIP)
    size_rounding: the resized long side is `round` (zsclip <= 1.2) or `floor` (int(), as transformers'
        get_resize_output_image_size and torchvision do).
    rgb_conversion: `white_background` composites transparency on white (transformers' convert_to_rgb);
        `convert` is PIL's image.convert("RGB"), which drops alpha (ruCLIP's processor).
    jpeg_draft: decode a big JPEG at 1/2..1/8 scale (libjpeg's DCT scaling), never below
        jpeg_draft_factor x image_size on either side. reducing_gap: PIL's two-step resize of the
        shortest-edge and crop-first modes (None: one exact resize; squash always resizes once, as in 1.2).
    exact: turn every shortcut off (no draft decode, no reducing_gap): pixels as the upstream processor
        computes them. The shortcuts' measured distance from exact is in export/README-hf.md.
    """

    image_size: int
    resize_mode: str = "shortest_edge_center_crop"
    interpolation: str = "bicubic"
    mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    size_rounding: str = "round"
    rgb_conversion: str = "white_background"
    jpeg_draft: bool = True
    reducing_gap: Optional[float] = 3.0
    exact: bool = False
    jpeg_draft_factor: int = 2

    @property
    def uses_draft(self) -> bool:
        return self.jpeg_draft and not self.exact

    @property
    def draft_factor(self) -> int:
        """The draft decode's minimum multiple of image_size; 0 when no draft decode is allowed."""
        return self.jpeg_draft_factor if self.uses_draft else 0

    @property
    def resize_gap(self) -> Optional[float]:
        return None if self.exact else self.reducing_gap

    def __post_init__(self) -> None:
        if self.size_rounding not in SIZE_ROUNDINGS:
            raise ModelDirError(f"preprocess.size_rounding {self.size_rounding!r} is not one of {SIZE_ROUNDINGS}")
        if self.rgb_conversion not in RGB_CONVERSIONS:
            raise ModelDirError(f"preprocess.rgb_conversion {self.rgb_conversion!r} is not one of {RGB_CONVERSIONS}")
        if self.jpeg_draft_factor < 2:
            raise ModelDirError(f"preprocess.jpeg_draft_factor must be >= 2, got {self.jpeg_draft_factor}")
        if self.reducing_gap is not None and self.reducing_gap < 1.0:
            raise ModelDirError(f"preprocess.reducing_gap must be >= 1 or null, got {self.reducing_gap}")
        if self.image_size < 8:
            raise ModelDirError(f"preprocess.image_size must be >= 8, got {self.image_size}")
        if self.resize_mode not in RESIZE_MODES:
            raise ModelDirError(f"preprocess.resize_mode {self.resize_mode!r} is not one of {RESIZE_MODES}")
        if self.interpolation not in INTERPOLATIONS:
            raise ModelDirError(
                f"preprocess.interpolation {self.interpolation!r} is not one of {INTERPOLATIONS}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelDirError("preprocess.mean and preprocess.std need 3 values each, std > 0")


@dataclass(frozen=True)
class TextConfig:
    """How a class name becomes the text tower's token inputs."""

    context_length: int
    pad_id: int = 0
    unk_id: Optional[int] = None
    prompts: Tuple[str, ...] = ("{}",)
    # A class name found in the glossary is embedded as (1 - w) * name + w * mean(definitions).
    glossary_file: Optional[str] = None
    gloss_weight: float = 0.5
    # How a class name is cleaned before it goes into the prompts:
    #   nfc_collapse  NFC, whitespace runs -> one space, trimmed (zsclip <= 1.2)
    #   lower_strip   str.lower().strip(), exactly ruCLIP's Predictor
    #   none          unchanged: the tokenizer's own normaliser is the family's (CLIP, SigLIP)
    label_cleaning: str = "nfc_collapse"
    # How a class's prompt embeddings are averaged:
    #   unit_mean  mean of the normalised prompt embeddings, renormalised (OpenAI's prompt ensembling)
    #   raw_mean   mean of the raw embeddings, then normalised (ruCLIP's Predictor.get_text_latents)
    prompt_average: str = "unit_mean"

    def __post_init__(self) -> None:
        if self.label_cleaning not in LABEL_CLEANINGS:
            raise ModelDirError(f"text.label_cleaning {self.label_cleaning!r} is not one of {LABEL_CLEANINGS}")
        if self.prompt_average not in PROMPT_AVERAGES:
            raise ModelDirError(f"text.prompt_average {self.prompt_average!r} is not one of {PROMPT_AVERAGES}")
        if self.context_length < 1:
            raise ModelDirError(f"text.context_length must be >= 1, got {self.context_length}")
        if not self.prompts or any("{}" not in p for p in self.prompts):
            raise ModelDirError("text.prompts must be a non-empty list of templates, each holding '{}'")
        if not 0.0 <= self.gloss_weight <= 1.0:
            raise ModelDirError(f"text.gloss_weight must be in [0, 1], got {self.gloss_weight}")


@dataclass(frozen=True)
class EmbeddingConfig:
    """The shared embedding space and how scores are computed in it.

    score(image, class) = logit_scale * <norm(image), norm(class)> + logit_bias

    `prior_correction` (alpha, 0 = off) divides each class's posterior by its mean posterior over the
    dataset's images, raised to alpha (a transductive calibration; see `zsclip.classifier.correct_prior`).
    """

    dim: int
    norm: str = "l2"
    logit_scale: float = 100.0
    logit_bias: float = 0.0
    prior_correction: float = 0.0

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ModelDirError(f"embedding.dim must be >= 1, got {self.dim}")
        if self.norm not in NORMS:
            raise ModelDirError(f"embedding.norm {self.norm!r} is not one of {NORMS}")
        if not 0.0 <= self.prior_correction <= 1.0:
            raise ModelDirError(f"embedding.prior_correction must be in [0, 1], got {self.prior_correction}")


@dataclass(frozen=True)
class IOConfig:
    """Names of the ONNX graphs' inputs and outputs."""

    image_input: str = "pixel_values"
    image_output: str = "image_embeds"
    text_input_ids: str = "input_ids"
    text_attention_mask: str = "attention_mask"
    text_output: str = "text_embeds"


@dataclass(frozen=True)
class Variant:
    """One runnable precision of the model: which files, and how they were made."""

    image_file: str
    text_file: str
    quantization: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelManifest:
    """Everything the runtime must not guess about a model directory."""

    model_id: str
    family: str
    embedding: EmbeddingConfig
    preprocess: PreprocessConfig
    text: TextConfig
    variants: Mapping[str, Variant]
    default_variant: str = "fp32"
    tokenizer_file: str = "tokenizer.json"
    io: IOConfig = field(default_factory=IOConfig)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)  # file name -> sha256
    format_version: str = FORMAT_VERSION
    # Non-empty for a model trained for one class list (a linear probe): it refuses any other list.
    fixed_classes: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.variants:
            raise ModelDirError("manifest lists no variants")
        if self.default_variant not in self.variants:
            raise ModelDirError(
                f"default_variant {self.default_variant!r} is not among variants {sorted(self.variants)}"
            )

    def variant(self, name: Optional[str] = None) -> Variant:
        """The variant called `name` (the default one for None).

        Raises:
            ModelDirError: no such variant.
        """
        key = name or self.default_variant
        if key not in self.variants:
            hint = " (re-run zsclip-export --quantize)" if key == "int8" else ""
            raise ModelDirError(
                f"variant {key!r} not in this model dir; it has {sorted(self.variants)}{hint}"
            )
        return self.variants[key]

    def referenced_files(self) -> Tuple[str, ...]:
        names = {self.tokenizer_file}
        if self.text.glossary_file:
            names.add(self.text.glossary_file)
        for v in self.variants.values():
            names.update((v.image_file, v.text_file))
        return tuple(sorted(names))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_to_dict(manifest: ModelManifest) -> Dict[str, Any]:
    data = dataclasses.asdict(manifest)
    # Tuples become lists in JSON; keep key order stable for diffs.
    return json.loads(json.dumps(data))


def manifest_from_dict(data: Mapping[str, Any], where: str = MANIFEST_NAME) -> ModelManifest:
    """Build a manifest from parsed JSON, checking the format version first.

    Raises:
        ModelDirError: unknown major format version, missing or mistyped fields.
    """
    version = str(data.get("format_version", ""))
    major = version.split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise ModelDirError(
            f"{where}: format_version {version or '(missing)'} is not supported by this zsclip "
            f"(reads {FORMAT_VERSION.split('.')[0]}.x); rebuild the model with this zsclip-export"
        )
    try:
        pre = dict(data["preprocess"])
        pre["mean"] = tuple(pre.get("mean", (0.5, 0.5, 0.5)))
        pre["std"] = tuple(pre.get("std", (0.5, 0.5, 0.5)))
        text = dict(data["text"])
        text["prompts"] = tuple(text.get("prompts", ("{}",)))
        return ModelManifest(
            model_id=str(data["model_id"]),
            family=str(data["family"]),
            embedding=EmbeddingConfig(**data["embedding"]),
            preprocess=PreprocessConfig(**pre),
            text=TextConfig(**text),
            variants={k: Variant(**v) for k, v in dict(data["variants"]).items()},
            default_variant=str(data.get("default_variant", "fp32")),
            tokenizer_file=str(data.get("tokenizer_file", "tokenizer.json")),
            io=IOConfig(**data.get("io", {})),
            provenance=dict(data.get("provenance", {})),
            files=dict(data.get("files", {})),
            format_version=version,
            fixed_classes=tuple(str(name) for name in data.get("fixed_classes", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelDirError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None


def load_manifest(model_dir: Path, verify: bool = True) -> ModelManifest:
    """Read and validate `model_dir/zsclip.json`.

    With `verify`, every referenced file must exist and match its recorded sha256.

    Raises:
        ModelDirError: missing directory or manifest, bad JSON, unknown format, missing or
            corrupt file.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    if not model_dir.is_dir():
        raise ModelDirError(
            f"model dir {model_dir} does not exist; build it with `zsclip-export --quantize` "
            f"or pass --model DIR"
        )
    if not path.is_file():
        raise ModelDirError(f"{MANIFEST_NAME} missing in {model_dir}; it is not a zsclip model dir")
    data = read_json_object(path, ModelDirError, "manifest")
    manifest = manifest_from_dict(data, where=str(path))
    if verify:
        verify_files(model_dir, manifest)
    return manifest


def verify_files(model_dir: Path, manifest: ModelManifest) -> None:
    """Check that each referenced file exists and matches its sha256.

    Raises:
        ModelDirError: naming the first missing, unlisted or corrupt file.
    """
    for name in manifest.referenced_files():
        path = Path(model_dir) / name
        if not path.is_file():
            raise ModelDirError(f"{name} missing in {model_dir}; re-run zsclip-export")
        expected = manifest.files.get(name)
        if expected is None:
            raise ModelDirError(f"{name} has no sha256 in {MANIFEST_NAME} of {model_dir}; re-run zsclip-export")
        if sha256_of(path) != expected:
            raise ModelDirError(
                f"{name} in {model_dir} does not match its sha256 (corrupt or edited); re-run zsclip-export"
            )


def write_manifest(model_dir: Path, manifest: ModelManifest) -> ModelManifest:
    """Hash the referenced files, then write `zsclip.json` atomically. Returns the hashed manifest."""
    model_dir = Path(model_dir)
    files = {name: sha256_of(model_dir / name) for name in manifest.referenced_files()}
    final = dataclasses.replace(manifest, files=files)
    tmp = model_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest_to_dict(final), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, model_dir / MANIFEST_NAME)
    return final

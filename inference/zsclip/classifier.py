"""The zero-shot model: two ONNX towers, a tokenizer and the scoring rule of a manifest."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from zsclip.glossary import Glossary, gloss_key, load_glossary
from zsclip.manifest import ModelManifest, load_manifest
from zsclip.session import SessionConfig, create_session
from zsclip.text import expand_prompts, load_tokenizer, tokenize, unknown_only

logger = logging.getLogger(__name__)

TEXT_BATCH = 256


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of scores [N, C] (shifted by each row's max, so large logits do not overflow)."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def normalize_rows(matrix: np.ndarray, norm: str) -> np.ndarray:
    """Rows scaled to unit L2 or L1 norm (zero rows stay zero)."""
    if norm == "l1":
        scale = np.abs(matrix).sum(axis=-1, keepdims=True)
    else:
        scale = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(scale, 1e-12)


def average_prompts(raw: np.ndarray, n_classes: int, rule: str, norm: str = "l2") -> np.ndarray:
    """Class embeddings [C, D] from raw prompt embeddings [C * P, D] (class-major): `unit_mean` averages the
    normalised prompt embeddings, `raw_mean` the raw ones (ruCLIP's Predictor); either is then normalised."""
    rows = raw.reshape(n_classes, -1, raw.shape[-1])
    if rule != "raw_mean":
        rows = normalize_rows(rows, norm)
    return normalize_rows(rows.mean(axis=1), norm)


class ZeroShotModel:
    """A loaded model directory. Sessions open on first use.

    Args:
        model_dir: a directory written by `zsclip-export`.
        variant: "fp32", "int8", ... (the manifest's default when None).
        session: threads and providers.
        verify: check every file's sha256 on load.

    Raises:
        ModelDirError: invalid model directory or unknown variant.
    """

    def __init__(
        self,
        model_dir: Path,
        variant: Optional[str] = None,
        session: SessionConfig = SessionConfig(),
        verify: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest: ModelManifest = load_manifest(self.model_dir, verify=verify)
        self.variant_name = variant or self.manifest.default_variant
        self.variant = self.manifest.variant(self.variant_name)
        self.session_config = session
        self.tokenizer = load_tokenizer(self.model_dir / self.manifest.tokenizer_file)
        self._image_session = None
        self._text_session = None
        self._glossary: Optional[Glossary] = None

    @property
    def image_session(self):  # noqa: ANN201 - onnxruntime type
        if self._image_session is None:
            self._image_session = create_session(self.model_dir / self.variant.image_file, self.session_config)
        return self._image_session

    @property
    def text_session(self):  # noqa: ANN201 - onnxruntime type
        if self._text_session is None:
            self._text_session = create_session(self.model_dir / self.variant.text_file, self.session_config)
        return self._text_session

    @property
    def glossary(self) -> Glossary:
        """The model's glossary (empty when its manifest names none)."""
        if self._glossary is None:
            name = self.manifest.text.glossary_file
            self._glossary = load_glossary(self.model_dir / name) if name else {}
        return self._glossary

    def use_exact_preprocessing(self) -> None:
        """Preprocess with every shortcut off from now on (`PreprocessConfig.exact`; `--exact`)."""
        exact = dataclasses.replace(self.manifest.preprocess, exact=True)
        self.manifest = dataclasses.replace(self.manifest, preprocess=exact)

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """[B, 3, H, W] float32 -> normalised image embeddings [B, D]."""
        io = self.manifest.io
        (out,) = self.image_session.run([io.image_output], {io.image_input: pixels.astype(np.float32)})
        return normalize_rows(out.astype(np.float32), self.manifest.embedding.norm)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Raw texts (no prompt expansion) -> normalised text embeddings [N, D]."""
        return normalize_rows(self.encode_texts_raw(texts), self.manifest.embedding.norm)

    def encode_texts_raw(self, texts: Sequence[str]) -> np.ndarray:
        """Raw texts (no prompt expansion) -> the text tower's embeddings [N, D], not normalised."""
        io = self.manifest.io
        chunks: List[np.ndarray] = []
        for start in range(0, len(texts), TEXT_BATCH):
            ids, mask = tokenize(self.tokenizer, texts[start : start + TEXT_BATCH], self.manifest.text)
            (out,) = self.text_session.run(
                [io.text_output], {io.text_input_ids: ids, io.text_attention_mask: mask}
            )
            chunks.append(out.astype(np.float32))
        if not chunks:
            return np.zeros((0, self.manifest.embedding.dim), dtype=np.float32)
        return np.concatenate(chunks)

    def build_class_embeddings(self, class_names: Sequence[str]) -> np.ndarray:
        """Per class: its prompt embeddings averaged per `text.prompt_average`, normalised. [C, D]."""
        text = self.manifest.text
        for name in class_names:
            if unknown_only(self.tokenizer, name, text) and not self.definitions_of(name):
                logger.warning("class name %r has no word the model knows; its score is a guess", name)
        texts = [t for name in class_names for t in expand_prompts(name, text.prompts, text.label_cleaning)]
        embeds = average_prompts(self.encode_texts_raw(texts), len(class_names), text.prompt_average, self.manifest.embedding.norm)
        return self.mix_glosses(class_names, embeds)

    def definitions_of(self, name: str) -> Tuple[str, ...]:
        """The glossary's definitions of a whole class name; none when it has no entry or `gloss_weight` is 0."""
        if self.manifest.text.gloss_weight == 0.0:
            return ()
        return self.glossary.get(gloss_key(name), ())

    def mix_glosses(self, class_names: Sequence[str], class_embeds: np.ndarray) -> np.ndarray:
        """Names found whole in the glossary: (1 - w) * name + w * mean of their definitions, renormalised."""
        weight = self.manifest.text.gloss_weight
        found = [(i, texts) for i, name in enumerate(class_names) if (texts := self.definitions_of(name))]
        if not found:
            return class_embeds
        definitions = [text for _, texts in found for text in texts]
        gloss_embeds = self.encode_texts(definitions)
        mixed = class_embeds.copy()
        start = 0
        for i, texts in found:
            mean = normalize_rows(gloss_embeds[start : start + len(texts)].mean(axis=0), self.manifest.embedding.norm)
            mixed[i] = (1.0 - weight) * class_embeds[i] + weight * mean
            start += len(texts)
        logger.debug("glossary: %d of %d class names mixed with their definitions", len(found), len(class_names))
        return normalize_rows(mixed, self.manifest.embedding.norm)

    def score(self, image_embeds: np.ndarray, class_embeds: np.ndarray) -> np.ndarray:
        """Logits [B, C] = scale * image . class + bias."""
        emb = self.manifest.embedding
        return emb.logit_scale * (image_embeds @ class_embeds.T) + emb.logit_bias

    def posteriors(self, image_embeds: np.ndarray, class_embeds: np.ndarray) -> np.ndarray:
        """P(class | image) [B, C]: the normalised mass for L1 (concept) models, softmax of the logits otherwise."""
        if self.manifest.embedding.norm == "l1":
            return normalize_rows(np.maximum(image_embeds @ class_embeds.T, 0.0), "l1")
        return softmax_rows(self.score(image_embeds, class_embeds))

    def describe(self) -> str:
        return f"{self.manifest.model_id} ({self.variant_name}) from {self.model_dir}"


def iter_batches(items: Iterable, size: int) -> Iterable[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


PRIOR_PSEUDO_COUNT = 10.0


def correct_prior(posteriors: np.ndarray, alpha: float, pseudo_count: float = PRIOR_PSEUDO_COUNT) -> np.ndarray:
    """Transductive prior correction: log P(c|x) - alpha * log prior(c), prior = the mean posterior over the
    dataset's images, smoothed towards uniform by `pseudo_count` virtual images (so that a dataset of one
    image is left as it is). Classes that soak up probability from every image are discounted.

    Returns corrected log-scores [N, C] (argmax = prediction).
    """
    n, c = posteriors.shape
    prior = (posteriors.sum(axis=0) + pseudo_count / c) / (n + pseudo_count)
    return np.log(np.maximum(posteriors, 1e-12)) - alpha * np.log(prior)[None, :]

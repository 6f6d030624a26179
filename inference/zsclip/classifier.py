"""The zero-shot model: two ONNX towers, a tokenizer and the scoring rule of a manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np

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

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """[B, 3, H, W] float32 -> normalised image embeddings [B, D]."""
        io = self.manifest.io
        (out,) = self.image_session.run([io.image_output], {io.image_input: pixels.astype(np.float32)})
        return normalize_rows(out.astype(np.float32), self.manifest.embedding.norm)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Raw texts (no prompt expansion) -> normalised text embeddings [N, D]."""
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
        return normalize_rows(np.concatenate(chunks), self.manifest.embedding.norm)

    def build_class_embeddings(self, class_names: Sequence[str]) -> np.ndarray:
        """Per class: mean of its normalised prompt embeddings, renormalised. [C, D]."""
        prompts = self.manifest.text.prompts
        for name in class_names:
            if unknown_only(self.tokenizer, name, self.manifest.text):
                logger.warning("class name %r has no word the model knows; its score is a guess", name)
        texts = [text for name in class_names for text in expand_prompts(name, prompts)]
        embeds = self.encode_texts(texts).reshape(len(class_names), len(prompts), -1)
        return normalize_rows(embeds.mean(axis=1), self.manifest.embedding.norm)

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

"""The offline default recipe: align the navec text head with the image classifier's prototypes.

Each name of an ImageNet class is pulled onto its class prototype, each hypernym onto its descendants
(soft contrastive target over all 1000 prototypes + a cosine pull towards the normalised mean of the
covered prototypes). Each phrase also trains in its nominative plural (`zsclip_train.morph`), so a name
written in the plural maps like the singular. The pooled inputs are fixed, so training is a full-batch
MLP fit: minutes on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from zsclip.errors import ConfigError

from zsclip_train.labels import LabelRow, Phrase, augment_phrases, build_phrases, synonym_holdout
from zsclip_train.text_tower import NavecTextTower

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignConfig:
    """Hyper-parameters of the text-head alignment."""

    epochs: int = 400
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pull_weight: float = 1.0
    # 0.05: best of 0.02 / 0.05 / 0.1 on the image proxy suite (0.489 / 0.4955 / 0.469) and held-out rows
    # (0.276 / 0.290 / 0.283); only the held-out-synonym proxy preferred 0.02 (0.661 vs 0.635)
    input_noise: float = 0.05
    seed: int = 0
    context_length: int = 16
    plural_augment: bool = True  # also train every phrase's nominative plural (needs pymorphy3)
    # also pull each class's Russian definition (a bag of words) onto it; off: no gain on either text proxy
    definitions: bool = False
    train_context_length: int = 64  # tokens pooled per training phrase (definitions are longer than names)
    batch_size: int = 0  # phrases per AdamW step; 0: the full batch

    def __post_init__(self) -> None:
        if self.batch_size < 0:
            raise ConfigError("batch_size must be >= 0 (0: full batch)")
        if self.epochs < 1 or self.lr <= 0 or self.pull_weight < 0 or self.input_noise < 0:
            raise ConfigError("epochs >= 1, lr > 0, pull_weight >= 0 and input_noise >= 0 are required")


@dataclass
class AlignReport:
    final_loss: float = float("nan")
    n_phrases: int = 0
    validation: Dict[str, float] = field(default_factory=dict)


def encode_phrases(tokenizer, texts: Sequence[str], context_length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    encodings = tokenizer.encode_batch(list(texts))
    width = max(1, max(min(len(e.ids), context_length) for e in encodings))
    ids = torch.zeros((len(texts), width), dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, enc in enumerate(encodings):
        row = enc.ids[:context_length]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
        mask[i, : len(row)] = 1
    return ids, mask


def phrase_targets(phrases: Sequence[Phrase], n_classes: int) -> torch.Tensor:
    target = torch.zeros((len(phrases), n_classes))
    for i, phrase in enumerate(phrases):
        target[i, list(phrase.classes)] = 1.0 / len(phrase.classes)
    return target


def fit_head(
    tower: NavecTextTower,
    pooled: torch.Tensor,
    target: torch.Tensor,
    cfg: AlignConfig,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> float:
    """AdamW on fixed pooled inputs, full-batch (`cfg.batch_size` 0) or in shuffled mini-batches, with a cosine
    learning rate over all steps; returns the last epoch's (mean) loss."""
    torch.manual_seed(cfg.seed)
    pull = F.normalize(target @ tower.prototypes, dim=-1)
    params = [p for p in tower.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(pooled)
    batch = cfg.batch_size if 0 < cfg.batch_size < n else n
    steps_per_epoch = -(-n // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps_per_epoch)
    tower.train()
    loss_value = float("nan")
    for epoch in range(cfg.epochs):
        order = torch.randperm(n) if batch < n else None
        total = 0.0
        for start in range(0, n, batch):
            rows = order[start:start + batch] if order is not None else slice(None)
            loss = head_loss(tower, pooled[rows], target[rows], pull[rows], cfg)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * (len(pooled[rows]) if order is not None else 1)
        loss_value = total / n if order is not None else total
        if on_epoch:
            on_epoch(epoch, loss_value)
    tower.eval()
    return loss_value


def head_loss(tower: NavecTextTower, pooled: torch.Tensor, target: torch.Tensor, pull: torch.Tensor,
              cfg: AlignConfig) -> torch.Tensor:
    """Soft contrastive loss over the prototypes plus the cosine pull, on noisy inputs."""
    noisy = F.normalize(pooled + cfg.input_noise * torch.randn_like(pooled), dim=-1)
    projected = tower.project(noisy)
    logits = tower.concept_logits(projected)
    contrastive = -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    pull_loss = (1.0 - (projected * pull).sum(dim=-1)).mean()
    return contrastive + cfg.pull_weight * pull_loss


@torch.no_grad()
def concept_distribution(tower: NavecTextTower, tokenizer, texts: Sequence[str], context_length: int) -> torch.Tensor:
    ids, mask = encode_phrases(tokenizer, texts, context_length)
    return tower(ids, mask)


def validate_synonyms(
    tower: NavecTextTower, tokenizer, rows: Sequence[LabelRow], holdout: Sequence[Tuple[int, str]], context_length: int,
    inflect: Optional[Callable[[str], Optional[str]]] = None,
) -> Dict[str, float]:
    """Top-1/top-5 of held-out class names (each class's last synonym) over the 1000 classes; with
    `inflect`, also of those names' inflected (plural) forms (`val_plural_*`)."""
    metrics = topk_metrics(tower, tokenizer, holdout, context_length, "val")
    if inflect is not None:
        inflected = [(c, form) for c, name in holdout for form in [inflect(name)] if form]
        if inflected:
            metrics.update(topk_metrics(tower, tokenizer, inflected, context_length, "val_plural"))
    return metrics


def topk_metrics(tower, tokenizer, pairs: Sequence[Tuple[int, str]], context_length: int, prefix: str) -> Dict[str, float]:
    classes = torch.tensor([c for c, _ in pairs])
    q = concept_distribution(tower, tokenizer, [name for _, name in pairs], context_length)
    top5 = q.topk(5, dim=-1).indices
    return {
        f"{prefix}_top1": float((top5[:, 0] == classes).float().mean()),
        f"{prefix}_top5": float((top5 == classes[:, None]).any(dim=-1).float().mean()),
        f"{prefix}_n": float(len(pairs)),
    }


def align_text_tower(
    tower: NavecTextTower,
    tokenizer,
    rows: Sequence[LabelRow],
    cfg: AlignConfig,
    validate: bool = True,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> AlignReport:
    """Train `tower`'s head on the label table. With `validate`, first fit once without a held-out synonym
    per class and report how well those unseen names (and their plurals) are mapped (`validation_fit`);
    then fit on everything.

    Raises:
        ConfigError: `cfg.plural_augment` without pymorphy3.
    """
    report = AlignReport()
    if validate:
        report.validation = validation_fit(tower, tokenizer, rows, cfg)
    report.final_loss, report.n_phrases = final_fit(tower, tokenizer, rows, cfg, on_epoch)
    return report


def validation_fit(
    tower: NavecTextTower, tokenizer, rows: Sequence[LabelRow], cfg: AlignConfig,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> Dict[str, float]:
    """Fit without each class's held-out synonym, score those names (and plurals), reset the head."""
    inflect = plural_inflector() if cfg.plural_augment else None
    holdout = sorted(synonym_holdout(rows))
    phrases = augment_phrases(build_phrases(rows, set(holdout), cfg.definitions), inflect)
    fit_once(tower, tokenizer, phrases, tower.prototypes.shape[0], cfg, on_epoch)
    validation = validate_synonyms(tower, tokenizer, rows, holdout, cfg.context_length, inflect)
    logger.info("held-out synonyms: %s", validation)
    reset_head(tower, cfg.seed)
    return validation


def final_fit(
    tower: NavecTextTower, tokenizer, rows: Sequence[LabelRow], cfg: AlignConfig,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> Tuple[float, int]:
    """Fit the head, freshly initialised from `cfg.seed` (the same start with or without a validation fit
    before), on every phrase of the label table; returns (final loss, number of phrases)."""
    reset_head(tower, cfg.seed)
    inflect = plural_inflector() if cfg.plural_augment else None
    phrases = augment_phrases(build_phrases(rows, definitions=cfg.definitions), inflect)
    return fit_once(tower, tokenizer, phrases, tower.prototypes.shape[0], cfg, on_epoch), len(phrases)


def plural_inflector() -> Callable[[str], Optional[str]]:
    from zsclip_train.morph import analyzer, plural_phrase

    analyzer()  # fail early when pymorphy3 is missing
    return plural_phrase


def fit_once(tower, tokenizer, phrases: List[Phrase], n_classes: int, cfg: AlignConfig, on_epoch) -> float:
    ids, mask = encode_phrases(tokenizer, [p.text for p in phrases], cfg.train_context_length)
    with torch.no_grad():
        pooled = tower.pool(ids, mask)
    return fit_head(tower, pooled, phrase_targets(phrases, n_classes), cfg, on_epoch)


def reset_head(tower: NavecTextTower, seed: int) -> None:
    torch.manual_seed(seed)
    for module in list(tower.mlp) + [tower.skip]:
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    with torch.no_grad():
        tower.log_scale.fill_(float(np.log(1 / 0.05)))

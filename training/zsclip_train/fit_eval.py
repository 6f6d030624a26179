"""Zero-shot evaluation during training on contest-style dirs (dataset = classes.json + img/; gt.json)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from zsclip.datadir import find_datasets
from zsclip.evaluate import read_labels

from zsclip_train.data_pairs import ImagePreprocess, QueryTokenizer, load_image
from zsclip_train.fit_model import TwoTower

logger = logging.getLogger(__name__)


@torch.no_grad()
def class_embeddings(model: TwoTower, tokenizer: QueryTokenizer, classes: Sequence[str], prompts: Sequence[str],
                     device: torch.device) -> torch.Tensor:
    """Per class, the mean of its normalised prompt embeddings, renormalised: [C, D]."""
    texts = [p.replace("{}", name) for name in classes for p in prompts]
    ids, mask = tokenizer(texts)
    embeds = model.encode_text(ids.to(device), mask.to(device)).float()
    return F.normalize(embeds.view(len(classes), len(prompts), -1).mean(1), dim=-1)


@torch.no_grad()
def evaluate_zero_shot(model: TwoTower, tokenizer: QueryTokenizer, eval_dir: Path, gt_path: Optional[Path],
                       prompts: Sequence[str] = ("{}",), device: Optional[torch.device] = None,
                       batch_size: int = 64, max_images: int = 2000) -> Dict[str, float]:
    """Top-1 accuracy per dataset plus their mean (key "mean"); images without a label are skipped.

    Raises:
        InputDataError: missing dirs, broken classes.json or gt.json.
    """
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    gt = read_labels(gt_path or Path(eval_dir) / "gt.json", "ground truth")
    preprocess = ImagePreprocess.of_model(model)
    scores: Dict[str, float] = {}
    for dataset in find_datasets(Path(eval_dir)):
        labels = gt.get(dataset.name, {})
        images = [p for p in dataset.images if p.stem in labels][:max_images]
        if not images:
            logger.warning("eval: no labelled image in dataset %s", dataset.name)
            continue
        classes = class_embeddings(model, tokenizer, dataset.classes, prompts, device)
        correct = 0
        for start in range(0, len(images), batch_size):
            chunk = images[start: start + batch_size]
            pixels = torch.stack([preprocess(load_image(p.read_bytes())) for p in chunk])
            predicted = (model.encode_image(pixels.to(device)).float() @ classes.t()).argmax(1).tolist()
            correct += sum(int(pred == labels[p.stem]) for pred, p in zip(predicted, chunk))
        scores[dataset.name] = correct / len(images)
    if scores:
        scores["mean"] = sum(scores.values()) / len(scores)
    model.train(was_training)
    return scores

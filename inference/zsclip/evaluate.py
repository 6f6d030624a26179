"""Score OUT.json against gt.json the way the contest does: mean over datasets of accuracy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from zsclip.errors import InputDataError

if TYPE_CHECKING:
    from zsclip.datadir import Dataset

Labels = Mapping[str, Mapping[str, int]]


@dataclass
class DatasetScore:
    name: str
    accuracy: float
    n_images: int
    per_class: Dict[int, Tuple[int, int]] = field(default_factory=dict)  # class -> (correct, total)
    confusion: Optional[np.ndarray] = None  # [true, predicted]


@dataclass
class EvalReport:
    datasets: List[DatasetScore]

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean([d.accuracy for d in self.datasets])) if self.datasets else 0.0


def read_labels(path: Path, what: str) -> Dict[str, Dict[str, int]]:
    """Read a `{dataset: {image_stem: class_index}}` JSON file.

    Raises:
        InputDataError: unreadable file or wrong shape.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{path}: cannot read {what} ({exc})") from None
    check_labels_shape(data, f"{what} {path}")
    return data


def check_labels_shape(data: object, where: str) -> None:
    """`{str: {str: int}}` or InputDataError naming the first offending entry."""
    if not isinstance(data, dict):
        raise InputDataError(f"{where}: top level must be an object {{dataset: {{image: class}}}}")
    for dataset, labels in data.items():
        if not isinstance(labels, dict):
            raise InputDataError(f"{where}: dataset {dataset!r} must map image names to class indices")
        for image, label in labels.items():
            if not isinstance(label, int) or isinstance(label, bool) or label < 0:
                raise InputDataError(f"{where}: {dataset}/{image} has label {label!r}, not a class index")


def check_strict(gt: Labels, pred: Labels, n_classes: Optional[Mapping[str, int]] = None) -> None:
    """The contest's strict rules: every dataset and image of gt predicted, nothing extra, indices in range.

    Raises:
        InputDataError: naming the first violation.
    """
    for dataset, labels in gt.items():
        if dataset not in pred:
            raise InputDataError(f"predictions miss dataset {dataset!r}")
        missing = sorted(set(labels) - set(pred[dataset]))
        if missing:
            raise InputDataError(f"predictions for {dataset!r} miss {len(missing)} image(s), e.g. {missing[0]!r}")
        extra = sorted(set(pred[dataset]) - set(labels))
        if extra:
            raise InputDataError(f"predictions for {dataset!r} have {len(extra)} unknown image(s), e.g. {extra[0]!r}")
        limit = (n_classes or {}).get(dataset)
        if limit is not None:
            bad = [k for k, v in pred[dataset].items() if v >= limit]
            if bad:
                raise InputDataError(f"{dataset}/{bad[0]}: class index {pred[dataset][bad[0]]} >= {limit} classes")
    extra_sets = sorted(set(pred) - set(gt))
    if extra_sets:
        raise InputDataError(f"predictions have unknown dataset(s) {extra_sets}")


GT_STEMS = ("gt", "ground_truth", "groundtruth")  # file names that say "ground truth"


def check_not_swapped(gt_path: Path, out_path: Path, data_given: bool) -> None:
    """Fail when GT_JSON and OUT_JSON look swapped: OUT_JSON is named like ground truth and GT_JSON is not, or
    (without --data) only OUT_JSON has the `datasets/` folder a ground truth comes with.

    Raises:
        InputDataError: naming which file is which and the command in the right order.
    """
    fix = f"; the ground truth comes first: zsclip-eval {out_path} {gt_path}"
    if Path(out_path).stem.lower() in GT_STEMS and Path(gt_path).stem.lower() not in GT_STEMS:
        raise InputDataError(f"the files look swapped: {out_path} (given as OUT_JSON, the predictions) is named like "
                             f"ground truth, {gt_path} (given as GT_JSON) is not{fix}")
    if not data_given and not (Path(gt_path).parent / "datasets").is_dir() and (Path(out_path).parent / "datasets").is_dir():
        raise InputDataError(f"the files look swapped: {gt_path} (given as GT_JSON) has no datasets/ folder beside it, "
                             f"{out_path} (given as OUT_JSON, the predictions) has{fix}")


def check_ground_truth_matches(gt: Labels, datasets: Sequence[Dataset], gt_path: Path, data_dir: Path,
                               strict: bool = True) -> None:
    """Fail when the data dir is not the one of this ground truth: a GT dataset it lacks, or (`strict`) a GT image
    not in that dataset's img/, or a GT class index beyond its classes.json.

    Raises:
        InputDataError: naming the ground truth, the data dir and the first mismatch.
    """
    by_name = {d.name: d for d in datasets}
    missing = sorted(set(gt) - set(by_name))
    if missing:
        held = ", ".join(repr(name) for name in sorted(by_name)[:5])
        raise InputDataError(f"{data_dir} is not the data of {gt_path}: the ground truth's dataset {missing[0]!r} "
                             f"is not there (it holds {held}); pass --data with that ground truth's datasets folder")
    for name in sorted(gt) if strict else ():
        dataset, labels = by_name[name], gt[name]
        unknown = sorted(set(labels) - {path.stem for path in dataset.images})
        if unknown:
            raise InputDataError(f"{data_dir} is not the data of {gt_path}: {len(unknown)} of its {len(labels)} "
                                 f"{name!r} images are not in {data_dir / name / 'img'}, e.g. {unknown[0]!r}")
        beyond = sorted(stem for stem, label in labels.items() if label >= len(dataset.classes))
        if beyond:
            raise InputDataError(f"{gt_path}: {name}/{beyond[0]} has class {labels[beyond[0]]}, but "
                                 f"{data_dir / name / 'classes.json'} lists {len(dataset.classes)} classes")


def score_dataset(name: str, gt: Mapping[str, int], pred: Mapping[str, int], n_classes: int) -> DatasetScore:
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    for image, label in gt.items():
        guess = pred.get(image, -1)
        if 0 <= guess < n_classes:
            confusion[label, guess] += 1
    totals = np.bincount([v for v in gt.values()], minlength=n_classes)
    correct = np.diag(confusion)
    per_class = {c: (int(correct[c]), int(totals[c])) for c in range(n_classes) if totals[c]}
    accuracy = float(correct.sum() / max(1, len(gt)))
    return DatasetScore(name, accuracy, len(gt), per_class, confusion)


def evaluate(
    gt: Labels, pred: Labels, strict: bool = True, n_classes: Optional[Mapping[str, int]] = None
) -> EvalReport:
    """Per-dataset accuracy and per-class counts; `strict` enforces the contest's format rules."""
    if strict:
        check_strict(gt, pred, n_classes)
    scores = []
    for dataset in sorted(gt):
        labels = gt[dataset]
        size = (n_classes or {}).get(dataset) or 1 + max(
            [*labels.values(), *pred.get(dataset, {}).values(), 0]
        )
        scores.append(score_dataset(dataset, labels, pred.get(dataset, {}), size))
    return EvalReport(scores)


def worst_classes(score: DatasetScore, k: int = 10) -> List[Tuple[int, float, int]]:
    """(class, accuracy, n) of the k worst classes."""
    rows = [(c, ok / n, n) for c, (ok, n) in score.per_class.items()]
    return sorted(rows, key=lambda r: (r[1], r[0]))[:k]


def render_confusion_png(score: DatasetScore, path: Path, class_names: Optional[Sequence[str]] = None) -> None:
    """Save a row-normalised confusion matrix as a PNG (pillow only).

    Raises:
        InputDataError: `path` cannot be written (missing folder, read-only, a directory).
    """
    from PIL import Image, ImageDraw

    matrix = score.confusion if score.confusion is not None else np.zeros((1, 1))
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = rows.shape[0]
    cell = max(4, min(24, 900 // max(n, 1)))
    margin = 160 if class_names else 10
    size = margin + n * cell + 10
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for i in range(n):
        for j in range(n):
            shade = int(255 * (1 - rows[i, j]))
            draw.rectangle(
                [margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1],
                fill=(shade, shade, 255),
            )
        if class_names and cell >= 8:
            draw.text((2, margin + i * cell), str(class_names[i])[:24], fill="black")
    try:
        image.save(path, format="PNG")
    except OSError as exc:
        raise InputDataError(f"cannot write the confusion matrix {path} ({exc.strerror or exc})") from None

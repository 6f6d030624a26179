"""`zsclip-train probe`: a linear head on frozen embeddings, written as a model dir the runtime uses as is.

The head is multinomial logistic regression on features of the frozen image embedding (`log p` for L1
concept-distribution models: a linear function of the image classifier's logits; the L2 embedding for
CLIP models), standardised, L2-regularised with the strength chosen by stratified k-fold
cross-validation on the labelled images only.

The model dir it writes keeps the source's preprocessing, tokenizer and variants, with:

- image tower = source tower -> features -> linear head -> softmax: the image "embedding" is P(class | image);
- text tower = exact match of the name's token ids against the training class names -> one-hot
  (`text.names.onnx`, shared by all variants; the source text tower is not needed);
- embedding.norm "l1", dim = number of classes, one prompt "{}", no prior correction,

so `zsclip-predict --model DIR` scores <P(.|image), onehot(name)> = P(name | image) with no runtime change.
The classes are fixed: the manifest records them (`fixed_classes`) and `zsclip-predict` refuses
a dataset with other classes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from zsclip.atomic import atomic_dir
from zsclip.classifier import ZeroShotModel, normalize_rows
from zsclip.embed import EmbedConfig, Embeddings, embed_dir, load_embeddings
from zsclip.errors import ConfigError, InputDataError, ModelDirError
from zsclip.manifest import EmbeddingConfig, ModelManifest, Variant, sha256_of, write_manifest
from zsclip.session import SessionConfig
from zsclip.text import clean_label, tokenize

logger = logging.getLogger(__name__)

LOG_FLOOR = 1e-30
TEXT_FILE = "text.names.onnx"


def pad_ids(ids: np.ndarray, mask: np.ndarray, width: int) -> Tuple[np.ndarray, np.ndarray]:
    out_ids, out_mask = np.zeros((len(ids), width), np.int64), np.zeros((len(ids), width), np.int64)
    out_ids[:, : ids.shape[1]], out_mask[:, : ids.shape[1]] = ids, mask
    return out_ids, out_mask


@dataclass(frozen=True)
class ProbeConfig:
    """One `zsclip-train probe` run."""

    data_dir: Path  # DIR/datasets/<name>/ + DIR/gt.json, or a data dir with gt.json inside
    model_dir: Path
    out_dir: Path
    labels_path: Optional[Path] = None  # default: gt.json in data_dir
    dataset: Optional[str] = None  # needed when the data dir holds several datasets
    embeddings: Optional[Path] = None  # a zsclip-embed file of the same images and model: skips encoding
    threads: int = 1
    folds: int = 5
    l2_grid: Tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    max_iter: int = 300
    seed: int = 0
    force: bool = False

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ConfigError.for_field("threads", f"must be >= 1, got {self.threads}")
        if self.folds < 2 or self.max_iter < 1:
            raise ConfigError(f"folds must be >= 2 and max_iter >= 1, got {self.folds} and {self.max_iter}")
        if not self.l2_grid or min(self.l2_grid) < 0:
            raise ConfigError("l2_grid must hold non-negative values")


@dataclass(frozen=True)
class LinearHead:
    """logits = standardise(features(e)) @ weight + bias, folded into raw-feature weights for export."""

    weight: np.ndarray  # [D, C], on raw features
    bias: np.ndarray  # [C]
    l2: float
    cv_accuracy: Dict[float, float]


def probe_features(scoring_embeds: np.ndarray, norm: str) -> np.ndarray:
    """The head's input: log of the distribution (L1 models) or the unit embedding (L2 models)."""
    if norm == "l1":
        return np.log(np.maximum(normalize_rows(scoring_embeds, "l1"), LOG_FLOOR)).astype(np.float32)
    return normalize_rows(scoring_embeds, "l2").astype(np.float32)


# ---- fitting --------------------------------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int) -> Tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (mean cross-entropy + l2/2 |W|^2) by full-batch L-BFGS."""
    import torch

    features, targets = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    weight = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weight + bias, targets) + 0.5 * l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().numpy(), bias.detach().numpy()


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold index per sample, classes spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold


def fit_head(features: np.ndarray, y: np.ndarray, n_classes: int, cfg: ProbeConfig) -> LinearHead:
    """Standardise, choose the L2 strength by stratified k-fold CV, refit on everything, fold the scaling in."""
    import torch

    torch.set_num_threads(cfg.threads)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    x = (features - mean) / std
    fold = stratified_folds(y, cfg.folds, cfg.seed)
    scores: Dict[float, float] = {}
    for l2 in cfg.l2_grid:
        correct = 0
        for k in range(cfg.folds):
            train, test = fold != k, fold == k
            weight, bias = fit_logistic(x[train], y[train], n_classes, l2, cfg.max_iter)
            correct += int(((x[test] @ weight + bias).argmax(axis=1) == y[test]).sum())
        scores[l2] = correct / len(y)
        logger.info("probe: l2 %g -> %d-fold CV accuracy %.4f", l2, cfg.folds, scores[l2])
    best = max(cfg.l2_grid, key=lambda v: (scores[v], v))  # ties: the stronger regularisation
    weight, bias = fit_logistic(x, y, n_classes, best, cfg.max_iter)
    raw_weight = (weight / std[:, None]).astype(np.float32)
    raw_bias = (bias - (mean / std) @ weight).astype(np.float32)
    return LinearHead(raw_weight, raw_bias, best, scores)


# ---- labelled data --------------------------------------------------------------------------


def locate_labelled(cfg: ProbeConfig) -> Tuple[Path, Path]:
    """(data dir for find_datasets, labels json).

    Raises:
        InputDataError: no labels file.
    """
    root = Path(cfg.data_dir)
    data = root / "datasets" if (root / "datasets").is_dir() else root
    labels = Path(cfg.labels_path) if cfg.labels_path else root / "gt.json"
    if not labels.is_file():
        raise InputDataError(f"labels {labels} not found; pass --labels GT.json ({{dataset: {{image_stem: class}}}})")
    return data, labels


def training_rows(emb: Embeddings, labels: Dict, dataset: Optional[str]) -> Tuple[str, np.ndarray, np.ndarray]:
    """(dataset, embedding rows, class labels) of the labelled images.

    Raises:
        InputDataError: ambiguous or unknown dataset, no labelled image, or a label out of range.
    """
    names = [n for n in emb.dataset_names() if n in labels]
    if not names:
        raise InputDataError(f"no dataset is both embedded ({list(emb.dataset_names())}) and labelled "
                             f"({sorted(labels)}): are the embeddings and labels of the same data?")
    if dataset is None:
        if len(names) != 1:
            raise InputDataError(f"the labelled data has datasets {names}; choose one with --dataset")
        dataset = names[0]
    if dataset not in names:
        raise InputDataError(f"dataset {dataset!r} has no labels (labelled: {names})")
    gt = labels[dataset]
    n_classes = len(emb.classes(dataset)[1])
    rows = [i for i in emb.rows(dataset) if str(emb.stem[i]) in gt]
    if len(rows) < 2:
        raise InputDataError(f"dataset {dataset!r}: fewer than 2 labelled, decodable images")
    y = np.array([int(gt[str(emb.stem[i])]) for i in rows])
    if y.min() < 0 or y.max() >= n_classes:
        raise InputDataError(f"dataset {dataset!r}: a label is outside 0..{n_classes - 1}")
    return dataset, np.array(rows), y


# ---- writing the model dir ------------------------------------------------------------------


def _const(name: str, value: np.ndarray):  # noqa: ANN202 - onnx type
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value), name)


def _rename_output(model, output: str, new: str) -> None:  # noqa: ANN001 - onnx type
    for node in model.graph.node:
        node.output[:] = [new if o == output else o for o in node.output]
    for value in model.graph.output:
        if value.name == output:
            model.graph.output.remove(value)
            break


def _normalise_nodes(x: str, norm: str, prefix: str) -> Tuple[list, list, str]:
    """ONNX nodes for `normalize_rows(x, norm)`; returns (nodes, initialisers, output name)."""
    from onnx import helper

    inits = [_const(f"{prefix}_axis", np.array([-1], np.int64)), _const(f"{prefix}_eps", np.array(1e-12, np.float32))]
    if norm == "l1":
        nodes = [helper.make_node("Abs", [x], [f"{prefix}_abs"]),
                 helper.make_node("ReduceSum", [f"{prefix}_abs", f"{prefix}_axis"], [f"{prefix}_scale0"], keepdims=1)]
    else:
        nodes = [helper.make_node("Mul", [x, x], [f"{prefix}_sq"]),
                 helper.make_node("ReduceSum", [f"{prefix}_sq", f"{prefix}_axis"], [f"{prefix}_ss"], keepdims=1),
                 helper.make_node("Sqrt", [f"{prefix}_ss"], [f"{prefix}_scale0"])]
    nodes += [helper.make_node("Max", [f"{prefix}_scale0", f"{prefix}_eps"], [f"{prefix}_scale"]),
              helper.make_node("Div", [x, f"{prefix}_scale"], [f"{prefix}_out"])]
    return nodes, inits, f"{prefix}_out"


def compose_image_tower(source: Path, target: Path, output: str, norm: str, head: LinearHead) -> None:
    """Source image tower -> normalise -> probe features -> linear head -> softmax, same output name."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    _rename_output(model, output, "probe_frozen")
    nodes, inits, x = _normalise_nodes("probe_frozen", norm, "probe_norm")
    if norm == "l1":
        inits.append(_const("probe_floor", np.array(LOG_FLOOR, np.float32)))
        nodes += [helper.make_node("Max", [x, "probe_floor"], ["probe_floored"]),
                  helper.make_node("Log", ["probe_floored"], ["probe_features"])]
    else:
        nodes.append(helper.make_node("Identity", [x], ["probe_features"]))
    inits += [_const("probe_weight", head.weight), _const("probe_bias", head.bias)]
    nodes += [helper.make_node("MatMul", ["probe_features", "probe_weight"], ["probe_mm"]),
              helper.make_node("Add", ["probe_mm", "probe_bias"], ["probe_logits"]),
              helper.make_node("Softmax", ["probe_logits"], [output], axis=-1)]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    model.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", len(head.bias)]))
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def build_name_matcher(target: Path, io, name_ids: np.ndarray, name_mask: np.ndarray) -> None:  # noqa: ANN001
    """A text "tower" mapping the token ids of a training class name to its one-hot (zeros for other names).

    Names are matched by their exact token sequence (after the tokenizer's normalisation), not by text
    embedding: the source text tower may map different names (кувшин, кувшинка) to the same point.
    """
    import onnx
    from onnx import TensorProto, helper

    n_classes, width = name_ids.shape
    table = ((name_ids + 1) * name_mask).astype(np.int64)[None]  # [1, C, L]; 0 = padding
    inits = [_const("names", table), _const("one", np.array(1, np.int64)), _const("width", np.array([width], np.int64)),
             _const("zeros3", np.zeros(3, np.int64)), _const("start1", np.array([1], np.int64)),
             _const("end2", np.array([2], np.int64)), _const("axis1", np.array([1], np.int64)),
             _const("axis2", np.array([2], np.int64)), _const("zero_f", np.array(0.0, np.float32))]
    nodes = [
        helper.make_node("Add", [io.text_input_ids, "one"], ["ids1"]),
        helper.make_node("Mul", ["ids1", io.text_attention_mask], ["masked"]),
        helper.make_node("Shape", ["masked"], ["shape"]),
        helper.make_node("Slice", ["shape", "start1", "end2"], ["length"]),
        helper.make_node("Sub", ["width", "length"], ["missing"]),
        helper.make_node("Concat", ["zeros3", "missing"], ["pads"], axis=0),
        helper.make_node("Pad", ["masked", "pads"], ["padded"]),
        helper.make_node("Unsqueeze", ["padded", "axis1"], ["query"]),
        helper.make_node("Equal", ["query", "names"], ["same"]),
        helper.make_node("Not", ["same"], ["differ"]),
        helper.make_node("Cast", ["differ"], ["differ_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["differ_f", "axis2"], ["mismatches"], keepdims=0),
        helper.make_node("Equal", ["mismatches", "zero_f"], ["match"]),
        helper.make_node("Cast", ["match"], [io.text_output], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "probe_name_matcher",
        [helper.make_tensor_value_info(io.text_input_ids, TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info(io.text_attention_mask, TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info(io.text_output, TensorProto.FLOAT, ["batch", n_classes])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def probe_manifest(source: ModelManifest, variants: Dict[str, Variant], dataset: str, classes: Tuple[str, ...],
                   head: LinearHead, n_train: int) -> ModelManifest:
    provenance = {
        "probe": {
            "source_model_id": source.model_id, "source_files": dict(source.files), "dataset": dataset,
            "n_train": n_train, "features": "log p" if source.embedding.norm == "l1" else "l2 embedding",
            "l2": head.l2, "cv_accuracy": {str(k): v for k, v in head.cv_accuracy.items()},
        },
    }
    return ModelManifest(
        model_id=f"{source.model_id}+probe-{dataset}", family=f"{source.family}+linear-probe",
        embedding=EmbeddingConfig(dim=len(classes), norm="l1", logit_scale=1.0, logit_bias=0.0, prior_correction=0.0),
        preprocess=source.preprocess, text=dataclasses.replace(source.text, prompts=("{}",)), variants=variants,
        default_variant=source.default_variant, tokenizer_file=source.tokenizer_file, io=source.io,
        provenance=provenance, fixed_classes=tuple(classes),
    )


def check_probe_out(cfg: ProbeConfig) -> Path:
    """`cfg.out_dir`, when it may be written: missing, or an existing folder with `force`.

    Raises:
        InputDataError: it exists without `force`, or it is a file.
    """
    out = Path(cfg.out_dir)
    if out.exists() and not cfg.force:
        raise InputDataError(f"{out} exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise InputDataError(f"{out} is a file; give a folder for the probe model dir")
    return out


def write_probe_dir(cfg: ProbeConfig, source: ZeroShotModel, dataset: str, classes: Tuple[str, ...],
                    head: LinearHead, n_train: int) -> Path:
    """Build the model dir in a temporary folder, check it, then swap it into place (`zsclip.atomic.atomic_dir`)."""
    out = check_probe_out(cfg)
    with atomic_dir(out) as tmp:
        manifest, io = source.manifest, source.manifest.io
        variants: Dict[str, Variant] = {}
        for name, variant in manifest.variants.items():
            if not (tmp / variant.image_file).exists():
                compose_image_tower(source.model_dir / variant.image_file, tmp / variant.image_file, io.image_output,
                                    manifest.embedding.norm, head)
            variants[name] = Variant(variant.image_file, TEXT_FILE, {**dict(variant.quantization), "probe": "head in fp32"})
        text_cfg = dataclasses.replace(manifest.text, prompts=("{}",))
        ids, mask = tokenize(source.tokenizer, [clean_label(c) for c in classes], text_cfg)
        build_name_matcher(tmp / TEXT_FILE, io, *pad_ids(ids, mask, text_cfg.context_length))
        shutil.copyfile(source.model_dir / manifest.tokenizer_file, tmp / manifest.tokenizer_file)
        write_manifest(tmp, probe_manifest(manifest, variants, dataset, classes, head, n_train))
        check_probe_dir(tmp, classes)
    return out


def check_probe_dir(model_dir: Path, classes: Tuple[str, ...]) -> None:
    """Every class name must map to its own one-hot in every variant.

    Raises:
        ModelDirError: two class names the text tower cannot tell apart.
    """
    model = ZeroShotModel(model_dir, verify=True)
    for name in model.manifest.variants:
        model = ZeroShotModel(model_dir, name)
        found = model.build_class_embeddings(list(classes)).argmax(axis=1)
        clashes = [(classes[i], classes[int(j)]) for i, j in enumerate(found) if j != i]
        if clashes:
            raise ModelDirError(f"class names {clashes[0][0]!r} and {clashes[0][1]!r} are the same to the text tower "
                                f"(same tokens, variant {name}); a fixed-class probe needs distinct names")


def train_probe(cfg: ProbeConfig) -> Tuple[Path, LinearHead]:
    """Embed (or load) the labelled images, fit the head, write and check the model dir.

    Raises:
        InputDataError: bad data, labels or embeddings file; ModelDirError: bad source model.
    """
    check_probe_out(cfg)  # before the encoding and the fit
    data_dir, labels_path = locate_labelled(cfg)
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{labels_path}: unreadable labels ({exc})") from None
    source = ZeroShotModel(cfg.model_dir, session=SessionConfig(threads=cfg.threads))
    if cfg.embeddings is not None:
        emb = load_embeddings(cfg.embeddings)
        if emb.meta["model_id"] != source.manifest.model_id:
            raise InputDataError(f"{cfg.embeddings} was made with {emb.meta['model_id']}, not {source.manifest.model_id}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            emb = embed_dir(EmbedConfig(data_dir, Path(tmp) / "train.npz", cfg.model_dir, threads=cfg.threads),
                            model=source)
    dataset, rows, y = training_rows(emb, labels, cfg.dataset)
    _, classes = emb.classes(dataset)
    features = probe_features(emb.scoring_embeds[rows], source.manifest.embedding.norm)
    logger.info("probe: %d labelled images, %d classes, %d features", len(rows), len(classes), features.shape[1])
    head = fit_head(features, y, len(classes), cfg)
    out = write_probe_dir(cfg, source, dataset, classes, head, len(rows))
    logger.info("probe model dir %s (l2 %g, CV accuracy %.4f); source sha %s", out, head.l2,
                head.cv_accuracy[head.l2], sha256_of(Path(cfg.model_dir) / "zsclip.json")[:12])
    return out, head

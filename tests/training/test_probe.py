"""zsclip-train probe: a linear head on frozen embeddings, written as a model dir zsclip-predict uses as is."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402
from zsclip.cli import predict_main  # noqa: E402
from zsclip.errors import InputDataError  # noqa: E402
from zsclip.manifest import load_manifest  # noqa: E402
from zsclip_train.probe import ProbeConfig, fit_head, stratified_folds, train_probe  # noqa: E402

# The tiny model calls yellow "red"; the labels say class 2 ("зеленый"). Only a trained head gets it right.
COLOURS = {0: [(220, 20, 20), (200, 40, 30), (235, 10, 40)], 1: [(25, 30, 210), (40, 20, 190), (10, 50, 230)],
           2: [(230, 215, 25), (215, 225, 10), (240, 200, 40)]}
CLASSES = ["красный", "синий", "зелёный"]


def make_labelled(root: Path, colours: dict = COLOURS, classes: list = CLASSES) -> Path:
    from PIL import Image

    data = root / "datasets" / "colours"
    (data / "img").mkdir(parents=True)
    (data / "classes.json").write_text(json.dumps(classes, ensure_ascii=False), encoding="utf-8")
    gt = {}
    for c, rgbs in colours.items():
        for k, rgb in enumerate(rgbs):
            Image.new("RGB", (20, 20), rgb).save(data / "img" / f"c{c}_{k}.png")
            gt[f"c{c}_{k}"] = c
    (root / "gt.json").write_text(json.dumps({"colours": gt}), encoding="utf-8")
    return root


def test_probe_model_dir_is_used_transparently_by_predict(tiny_model_dir, tmp_path):
    train = make_labelled(tmp_path / "train")
    cfg = ProbeConfig(data_dir=train, model_dir=tiny_model_dir, out_dir=tmp_path / "probe", folds=3,
                      l2_grid=(1e-3, 1e-2))
    out, head = train_probe(cfg)
    manifest = load_manifest(out)
    assert manifest.embedding.dim == 3 and manifest.embedding.norm == "l1"
    assert manifest.fixed_classes == tuple(CLASSES) and set(manifest.variants) == {"fp32", "int8"}
    assert not list(tmp_path.glob(".probe.tmp-*"))

    held_out = make_labelled(tmp_path / "test", {0: [(210, 30, 25)], 1: [(30, 40, 200)], 2: [(225, 210, 30)]},
                             ["Красный", "синий", "зеленый"])  # same classes, other spelling
    for variant in ("fp32", "int8"):
        zero_shot, probed = tmp_path / "zs.json", tmp_path / f"probe_{variant}.json"
        for model, target in ((tiny_model_dir, zero_shot), (out, probed)):
            result = CliRunner().invoke(predict_main, [str(held_out / "datasets"), str(target), "--model", str(model),
                                                       "--variant", variant])
            assert result.exit_code == 0, result.output
        assert json.loads(zero_shot.read_text())["colours"]["c2_0"] == 0  # zero-shot: yellow is red
        assert json.loads(probed.read_text())["colours"] == {"c0_0": 0, "c1_0": 1, "c2_0": 2}


def test_probe_refuses_other_classes_and_existing_out(tiny_model_dir, tmp_path):
    train = make_labelled(tmp_path / "train")
    out, _ = train_probe(ProbeConfig(data_dir=train, model_dir=tiny_model_dir, out_dir=tmp_path / "probe", folds=3,
                                     l2_grid=(1e-2,)))
    other = make_labelled(tmp_path / "other", classes=["синий", "красный", "зелёный"])
    result = CliRunner().invoke(predict_main, [str(other / "datasets"), str(tmp_path / "o.json"), "--model", str(out)])
    assert result.exit_code == 1 and "fixed classes" in result.output
    with pytest.raises(InputDataError, match="--force"):
        train_probe(ProbeConfig(data_dir=train, model_dir=tiny_model_dir, out_dir=out, folds=3))


def test_probe_from_saved_embeddings_and_label_subset(tiny_model_dir, tmp_path):
    from zsclip.embed import EmbedConfig, embed_dir

    train = make_labelled(tmp_path / "train")
    embed_dir(EmbedConfig(train / "datasets", tmp_path / "emb.npz", tiny_model_dir))
    gt = json.loads((train / "gt.json").read_text())
    subset = {"colours": {k: v for k, v in gt["colours"].items() if not k.endswith("_2")}}
    (tmp_path / "half.json").write_text(json.dumps(subset))
    shutil.rmtree(train / "datasets" / "colours" / "img")  # the saved embeddings are enough
    (train / "datasets" / "colours" / "img").mkdir()
    out, head = train_probe(ProbeConfig(data_dir=train, model_dir=tiny_model_dir, out_dir=tmp_path / "p",
                                        labels_path=tmp_path / "half.json", embeddings=tmp_path / "emb.npz", folds=2,
                                        l2_grid=(1e-2,)))
    assert load_manifest(out).provenance["probe"]["n_train"] == 6


def test_head_folds_standardisation_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)) * [1, 10, 0.1, 3] + [5, -2, 0, 1]
    y = (x[:, 0] > 5).astype(int) + (x[:, 1] > -2).astype(int)
    cfg = ProbeConfig(Path("."), Path("."), Path("."), folds=3, l2_grid=(1e-3, 1e-1))
    head = fit_head(x.astype(np.float32), y, 3, dataclasses.replace(cfg))
    assert ((x @ head.weight + head.bias).argmax(1) == y).mean() > 0.9
    assert set(head.cv_accuracy) == {1e-3, 1e-1}
    folds = stratified_folds(np.repeat([0, 1], 6), 3, seed=0)
    assert all(np.bincount(folds[np.repeat([0, 1], 6) == c]).tolist() == [2, 2, 2] for c in (0, 1))


def test_names_the_tokenizer_cannot_tell_apart_are_refused(tiny_model_dir, tmp_path):
    from zsclip.errors import ModelDirError

    train = make_labelled(tmp_path / "train", classes=["красный", "кошка", "собака"])  # both unknown: [UNK]
    with pytest.raises(ModelDirError, match="same to the text tower"):
        train_probe(ProbeConfig(data_dir=train, model_dir=tiny_model_dir, out_dir=tmp_path / "p", folds=3,
                                l2_grid=(1e-2,)))
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".p.tmp-*"))

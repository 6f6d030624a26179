"""Transductive label spreading: the maths on synthetic features, and `zsclip-predict --spread` wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from zsclip.classifier import softmax_rows
from zsclip.cli import predict_main
from zsclip.errors import ConfigError
from zsclip.transduction import SpreadConfig, SymmetricGraph, knn_graph, spread_labels


def two_clusters(rng: np.random.Generator, per_class: int = 8) -> tuple:
    centres = np.eye(4)[:2]
    feats = np.concatenate([c + 0.05 * rng.normal(size=(per_class, 4)) for c in centres])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    labels = np.repeat([0, 1], per_class)
    return feats, labels


def test_spreading_mends_an_isolated_zero_shot_mistake():
    feats, labels = two_clusters(np.random.default_rng(0))
    scores = np.where(np.eye(2)[labels] > 0, 2.0, 0.0)
    scores[0] = [0.0, 0.5]  # one photo of class 0 that zero-shot calls class 1, not confidently
    assert scores.argmax(axis=1)[0] == 1
    spread = spread_labels(scores, feats)
    assert (spread.argmax(axis=1) == labels).all()


def test_a_confident_cluster_is_not_overturned_by_its_neighbour():
    feats, labels = two_clusters(np.random.default_rng(1))
    scores = np.where(np.eye(2)[labels] > 0, 3.0, 0.0)
    assert (spread_labels(scores, feats).argmax(axis=1) == labels).all()


def test_too_few_images_per_class_are_left_alone():
    feats, _ = two_clusters(np.random.default_rng(2), per_class=1)
    scores = np.array([[0.0, 0.4], [0.3, 0.0]])
    assert np.allclose(spread_labels(scores, feats), softmax_rows(scores))


def test_knn_graph_skips_self_and_takes_the_nearest():
    feats = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    index, weight = knn_graph(feats, 1)
    assert index[:, 0].tolist() == [1, 0, 3, 1]
    assert weight[0, 0] == pytest.approx(0.96)


def test_sparse_graph_product_equals_the_dense_one(monkeypatch):
    import zsclip.transduction as transduction

    rng = np.random.default_rng(3)
    feats = rng.normal(size=(50, 6))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    index, weight = knn_graph(feats.astype(np.float32), 4)
    dense = np.zeros((50, 50))
    dense[np.repeat(np.arange(50), 4), index.ravel()] = weight.ravel()
    z = rng.normal(size=(50, 7))
    monkeypatch.setattr(transduction, "EDGE_BLOCK", 64)  # several row blocks
    assert np.allclose(SymmetricGraph(index, weight.astype(np.float64)) @ z, 0.5 * (dense + dense.T) @ z)


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError):
        SpreadConfig(alpha=1.0)


def test_predict_spread_flag_is_wired(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    import zsclip.predict as predict

    calls = []
    real = predict.spread_labels

    def recording(scores, features, *args):
        calls.append(scores.shape)
        return real(scores, features, *args)

    monkeypatch.setattr(predict, "spread_labels", recording)
    root, gt = data_dir
    out = tmp_path / "out.json"
    for extra, n_calls in (([], 1), (["--no-spread"], 1), (["--spread"], 2)):  # on by default
        args = [str(root), str(out), "--model", str(tiny_model_dir), *extra]
        result = CliRunner().invoke(predict_main, args)
        assert result.exit_code == 0, result.output
        assert len(calls) == n_calls, extra
        assert json.loads(out.read_text(encoding="utf-8")) == gt
    assert calls[0] == (6, 3)

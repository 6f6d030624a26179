"""Few-shot blending: the maths on synthetic features, and `zsclip-predict --support` on the tiny model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_embed import tiny_l1_model_dir  # noqa: F401 - fixture: the tiny model scored as an L1 model
from zsclip.cli import predict_main
from zsclip.fewshot import choose_beta, class_evidence, fit_few_shot, knn_features

RED, BLUE, YELLOW = (220, 20, 20), (25, 30, 210), (230, 215, 25)


def test_knn_features_of_a_distribution_are_its_centred_logits():
    logits = np.array([[2.0, -1.0, 0.5, 3.0], [0.0, 0.0, 4.0, -4.0]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    centred = logits - logits.mean(axis=1, keepdims=True)
    expected = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    assert np.allclose(knn_features(p, "l1"), expected)
    assert np.allclose(knn_features(7.0 * p, "l1"), expected)  # unnormalised mass: same feature
    assert np.isfinite(knn_features(np.array([[1.0, 0.0, 0.0]]), "l1")).all()  # zero mass is floored
    assert np.allclose(np.linalg.norm(knn_features(np.array([[3.0, 4.0, 0.0]]), "l2")), 1.0)


def test_unsupported_class_keeps_its_zero_shot_score():
    rng = np.random.default_rng(0)
    support = knn_features(rng.normal(size=(4, 5)), "l2")
    labels = np.array([0, 0, 1, 1])
    queries = knn_features(rng.normal(size=(3, 5)), "l2")
    evidence, supported = class_evidence(queries @ support.T, labels, 3, beta=5.0)
    assert (evidence[:, 2] == 0).all() and not supported[:, 2].any()
    assert np.allclose(evidence[:, :2].sum(axis=1), 0.0)  # centred over the supported classes


def test_leave_one_out_excludes_each_photo_and_empties_singletons():
    support = np.eye(3)
    evidence, supported = class_evidence(support @ support.T, np.array([0, 0, 1]), 2, beta=1.0, exclude_self=True)
    assert supported[0].tolist() == [True, True] and supported[2].tolist() == [True, False]


def clusters(rng, n_per_class, centres, noise=0.05):
    feats = np.concatenate([c + noise * rng.normal(size=(n_per_class, len(c))) for c in centres])
    return knn_features(feats, "l2"), np.repeat(np.arange(len(centres)), n_per_class)


def test_weight_is_positive_when_photos_fix_zero_shot_and_zero_when_they_cannot():
    rng = np.random.default_rng(1)
    centres = np.eye(4)[:3] + 0.2
    feats, labels = clusters(rng, 5, centres)
    wrong = np.log(np.full((15, 3), 0.1) + 0.7 * np.eye(3)[(labels + 1) % 3])  # zero-shot always wrong
    head = fit_few_shot(wrong, feats, labels, 3)
    assert head.weight > 0 and head.loo_accuracy == 1.0 and head.zero_shot_loo_accuracy == 0.0
    right = np.log(np.full((15, 3), 0.1) + 0.7 * np.eye(3)[labels])
    noise_feats = knn_features(rng.normal(size=(15, 4)), "l2")  # photos carry no class information
    head = fit_few_shot(right, noise_feats, labels, 3)
    assert head.loo_accuracy == 1.0 and head.scores(right, noise_feats).argmax(1).tolist() == labels.tolist()


def test_one_shot_never_loses_to_zero_shot_on_the_support_set():
    rng = np.random.default_rng(2)
    feats, labels = clusters(rng, 1, np.eye(5))
    zero_shot = np.log(np.full((5, 5), 0.1) + 0.5 * np.eye(5)[labels])
    head = fit_few_shot(zero_shot, feats, labels, 5)
    assert head.loo_accuracy >= head.zero_shot_loo_accuracy


def test_beta_is_inverse_median_nearest_distance():
    feats = knn_features(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), "l2")
    assert choose_beta(feats) == pytest.approx(1 / 0.2)
    assert choose_beta(feats[:1]) > 0


def make_yellow_data(root: Path, support: dict) -> Path:
    """Classes red/blue/green, where the "green" photos are yellow: zero-shot calls them red."""
    from PIL import Image

    data = root / "data" / "colours"
    (data / "img").mkdir(parents=True)
    (data / "classes.json").write_text(json.dumps(["красный", "синий", "зеленый"], ensure_ascii=False), encoding="utf-8")
    colours = {0: RED, 1: BLUE, 2: YELLOW}
    for c, rgb in colours.items():
        for k in range(3):
            Image.new("RGB", (24, 24), tuple(v - 6 * k for v in rgb)).save(data / "img" / f"{c}_{k}.png")
    for c, n in support.items():
        folder = root / "support" / "colours" / str(c)
        folder.mkdir(parents=True)
        for k in range(n):
            Image.new("RGB", (24, 24), tuple(v - 3 - 6 * k for v in colours[c])).save(folder / f"s{c}_{k}.png")
    return root


def run_predict(root: Path, model: Path, *extra: str) -> dict:
    out = root / "out.json"
    result = CliRunner().invoke(predict_main, [str(root / "data"), str(out), "--model", str(model), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8"))["colours"]


@pytest.mark.parametrize("model_fixture", ["tiny_model_dir", "tiny_l1_model_dir"])
def test_support_fixes_what_zero_shot_gets_wrong(model_fixture, request, tmp_path, caplog):
    model_dir = request.getfixturevalue(model_fixture)
    root = make_yellow_data(tmp_path, {0: 2, 1: 2, 2: 2})
    zero_shot = run_predict(root, model_dir)
    assert [zero_shot[f"2_{k}"] for k in range(3)] == [0, 0, 0]
    with caplog.at_level(logging.INFO, logger="zsclip.fewshot"):
        few_shot = run_predict(root, model_dir, "--support", str(root / "support"))
    assert few_shot == {f"{c}_{k}": c for c in range(3) for k in range(3)}
    assert "leave-one-out accuracy 1.000" in caplog.text


def test_classes_without_support_stay_zero_shot(tiny_model_dir, tmp_path):
    root = make_yellow_data(tmp_path, {1: 2})
    assert run_predict(root, tiny_model_dir, "--support", str(root / "support")) == run_predict(root, tiny_model_dir)


@pytest.mark.parametrize("bad, message", [("7", "class index 0..2"), ("red", "class index")])
def test_bad_support_folder_is_a_user_error(tiny_model_dir, tmp_path, bad, message):
    root = make_yellow_data(tmp_path, {0: 1})
    (root / "support" / "colours" / bad).mkdir()
    result = CliRunner().invoke(predict_main, [str(root / "data"), str(root / "o.json"), "--model", str(tiny_model_dir),
                                               "--support", str(root / "support")])
    assert result.exit_code == 1 and message in result.output and not (root / "o.json").exists()


def test_missing_support_dir_is_a_user_error(tiny_model_dir, tmp_path):
    root = make_yellow_data(tmp_path, {})
    result = CliRunner().invoke(predict_main, [str(root / "data"), str(root / "o.json"), "--model", str(tiny_model_dir),
                                               "--support", str(root / "nowhere")])
    assert result.exit_code == 1 and "support dir" in result.output and "Traceback" not in result.output


def test_undecodable_support_photo_is_skipped_or_fatal_with_strict(tiny_model_dir, tmp_path):
    root = make_yellow_data(tmp_path, {0: 2, 1: 2, 2: 2})
    (root / "support" / "colours" / "2" / "bad.jpg").write_bytes(b"not a jpeg")
    assert run_predict(root, tiny_model_dir, "--support", str(root / "support"))["2_0"] == 2
    result = CliRunner().invoke(predict_main, [str(root / "data"), str(root / "o.json"), "--model", str(tiny_model_dir),
                                               "--support", str(root / "support"), "--strict"])
    assert result.exit_code == 1 and "bad.jpg" in result.output

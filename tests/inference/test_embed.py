"""zsclip-embed: file contents, exact reproduction of zsclip-predict's decisions, resume, hostile inputs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from zsclip.cli import embed_main, predict_main
from zsclip.embed import EmbedConfig, decisions_from_embeddings, embed_dir, load_embeddings
from zsclip.errors import InputDataError
from zsclip.manifest import EmbeddingConfig, load_manifest, write_manifest


@pytest.fixture(scope="session")
def tiny_l1_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model scored as an L1 concept-distribution model (its embeddings are non-negative)."""
    out = tmp_path_factory.mktemp("model_l1") / "tiny_l1"
    shutil.copytree(tiny_model_dir, out)
    manifest = load_manifest(out)
    write_manifest(out, dataclasses.replace(manifest, embedding=EmbeddingConfig(dim=3, norm="l1", logit_scale=10.0)))
    return out


def add_hostile_files(root: Path) -> None:
    img = root / "colours" / "img"
    (img / "broken.jpg").write_bytes(b"<html>not an image</html>")
    (img / "empty.PNG").write_bytes(b"")


def test_help():
    result = CliRunner().invoke(embed_main, ["--help"])
    assert result.exit_code == 0 and "--out" in result.output


@pytest.mark.parametrize("model_fixture", ["tiny_model_dir", "tiny_l1_model_dir"])
def test_embeddings_reproduce_predict_exactly(model_fixture, request, data_dir, tmp_path):
    model_dir = request.getfixturevalue(model_fixture)
    root, gt = data_dir
    add_hostile_files(root)
    out_json, out_npz = tmp_path / "out.json", tmp_path / "emb.npz"
    for command, args in ((predict_main, [str(root), str(out_json)]), (embed_main, [str(root), "--out", str(out_npz)])):
        result = CliRunner().invoke(command, [*args, "--model", str(model_dir), "--batch-size", "4"])
        assert result.exit_code == 0, result.output
    assert "2 undecodable" in result.output
    emb = load_embeddings(out_npz)
    predicted = json.loads(out_json.read_text(encoding="utf-8"))
    assert decisions_from_embeddings(emb) == predicted
    assert {k: predicted["colours"][k] for k in gt["colours"]} == gt["colours"]

    assert np.allclose(np.linalg.norm(emb.image_embeds, axis=1), 1.0, atol=1e-6)
    assert sorted(emb.stem.tolist()) == sorted(gt["colours"]) and set(emb.dataset.tolist()) == {"colours"}
    assert sorted(emb.failed_filename.tolist()) == ["broken.jpg", "empty.PNG"]
    assert emb.class_name.tolist() == ["Красный", "зелёный", "синий"] and emb.class_embeds.shape == (3, 3)
    norm = emb.meta["norm"]
    assert norm == ("l1" if "l1" in model_fixture else "l2")
    with np.load(out_npz) as raw:
        assert ("image_embeds_l1" in raw.files) == (norm == "l1")
    if norm == "l1":
        assert np.allclose(emb.scoring_embeds.sum(axis=1), 1.0, atol=1e-6)


def test_strict_fails_on_undecodable(tiny_model_dir, data_dir, tmp_path):
    root, _ = data_dir
    add_hostile_files(root)
    out = tmp_path / "emb.npz"
    result = CliRunner().invoke(embed_main, [str(root), "--out", str(out), "--model", str(tiny_model_dir), "--strict"])
    assert result.exit_code == 1 and "not a decodable image" in result.output and not out.exists()


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_file(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    from zsclip.classifier import ZeroShotModel

    root, _ = data_dir
    add_hostile_files(root)
    fresh = embed_dir(EmbedConfig(root, tmp_path / "fresh.npz", tiny_model_dir, batch_size=2, chunk_images=2))
    cfg = EmbedConfig(root, tmp_path / "emb.npz", tiny_model_dir, batch_size=2, chunk_images=2)
    original = ZeroShotModel.encode_images
    calls = {"n": 0}

    def dying(self, pixels):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed()
        return original(self, pixels)

    monkeypatch.setattr(ZeroShotModel, "encode_images", dying)
    with pytest.raises(Killed):
        embed_dir(cfg)
    partial = tmp_path / "emb.npz.partial"
    assert len(list(partial.glob("chunk-*.npz"))) >= 1 and not cfg.out_path.exists()

    monkeypatch.setattr(ZeroShotModel, "encode_images", original)
    encoded = {"n": 0}

    def counting(self, pixels):
        encoded["n"] += len(pixels)
        return original(self, pixels)

    monkeypatch.setattr(ZeroShotModel, "encode_images", counting)
    resumed = embed_dir(cfg)
    assert encoded["n"] < 6  # the chunks written before the kill were not encoded again
    assert not partial.exists()
    assert resumed.filename.tolist() == fresh.filename.tolist()
    assert np.array_equal(resumed.image_embeds, fresh.image_embeds)
    assert decisions_from_embeddings(load_embeddings(cfg.out_path)) == decisions_from_embeddings(fresh)


def test_a_foreign_partial_run_is_refused(tiny_model_dir, data_dir, tmp_path):
    root, _ = data_dir
    partial = tmp_path / "emb.npz.partial"
    partial.mkdir()
    (partial / "run.json").write_text(json.dumps({"model_id": "other"}), encoding="utf-8")
    with pytest.raises(InputDataError, match="delete it"):
        embed_dir(EmbedConfig(root, tmp_path / "emb.npz", tiny_model_dir))


def test_not_an_embeddings_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"nope")
    with pytest.raises(InputDataError, match="zsclip-embed"):
        load_embeddings(tmp_path / "x.npz")

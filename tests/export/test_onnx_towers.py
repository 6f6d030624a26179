import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from zsclip.manifest import IOConfig  # noqa: E402
from zsclip_export.onnx_io import check_against_torch, export_text_tower  # noqa: E402
from zsclip_export.quantize import QuantizeConfig, quantize_dynamic_file, top1_agreement  # noqa: E402
from zsclip_train.text_tower import NavecTextTower  # noqa: E402


def product_vectors(rng, codebook, n):
    """n vectors made of one codeword per group (as navec's are), after a zero row 0."""
    groups, entries, _ = codebook.shape
    picks = rng.integers(0, entries, size=(n, groups))
    rows = codebook[np.arange(groups)[None, :], picks].reshape(n, -1)
    return np.vstack([np.zeros((1, rows.shape[1])), rows]).astype(np.float32)


@pytest.fixture()
def codebook():
    return np.random.default_rng(2).normal(size=(8, 16, 3)).astype(np.float32)


@pytest.fixture()
def tower(codebook):
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.1, 1, 51).astype(np.float32)
    weights[0] = 0.0
    tower = NavecTextTower(product_vectors(rng, codebook, 50), np.arange(51), weights,
                           rng.normal(size=(20, 40)).astype(np.float32), hidden=32)
    return tower.eval()


def test_product_quantized_storage_is_lossless_and_small(tower, codebook):
    ids = torch.randint(1, 51, (4, 5))
    dense = tower.pool(ids, torch.ones_like(ids))
    tower.product_quantized_storage(codebook)
    assert tower.codes is not None and tower.codes.dtype == torch.uint8 and tower.codes.shape == (51, 8)
    assert tower.vectors.numel() == 0
    assert torch.allclose(tower.pool(ids, torch.ones_like(ids)), dense, atol=1e-6)


def test_product_quantized_storage_refuses_vectors_the_codebook_cannot_make(tower, codebook):
    from zsclip.errors import ConfigError

    tower.vectors[3, 0] += 0.5
    with pytest.raises(ConfigError, match="not products of the codebook"):
        tower.product_quantized_storage(codebook)
    with pytest.raises(ConfigError, match="does not fit"):
        tower.product_quantized_storage(codebook[:, :, :2])


def test_product_quantized_storage_guards_row_zero_and_runs_once(tower, codebook):
    from zsclip.errors import ConfigError

    tower.token_weight[0] = 0.5  # row 0 has no exact code: a token on it must not count
    with pytest.raises(ConfigError, match="row 0"):
        tower.product_quantized_storage(codebook)
    tower.token_weight[0] = 0.0
    tower.product_quantized_storage(codebook)
    with pytest.raises(ConfigError, match="already product-quantised"):
        tower.product_quantized_storage(codebook)


@pytest.mark.parametrize("batch", [1, 5])
def test_text_tower_onnx_matches_torch(tower, codebook, tmp_path, batch):
    io = IOConfig()
    path = tmp_path / "text.onnx"
    tower.product_quantized_storage(codebook)
    export_text_tower(tower, path, io)
    ids = torch.randint(1, 51, (batch, 6))
    ids[0, 4:] = 0
    error = check_against_torch("text", tower, path, [ids, (ids > 0).long()],
                                [io.text_input_ids, io.text_attention_mask], 1e-4, allow_mismatch=False)
    assert error < 1e-4


def test_dynamic_int8_text_tower_agrees(tower, codebook, tmp_path):
    io = IOConfig()
    export_text_tower(tower.product_quantized_storage(codebook), tmp_path / "t.onnx", io)
    quantize_dynamic_file(tmp_path / "t.onnx", tmp_path / "t8.onnx", ["MatMul", "Gemm"])
    import onnxruntime as ort

    ids = np.arange(1, 51).reshape(50, 1)
    feeds = {io.text_input_ids: ids, io.text_attention_mask: np.ones_like(ids)}
    ref = ort.InferenceSession(str(tmp_path / "t.onnx")).run(None, feeds)[0]
    cand = ort.InferenceSession(str(tmp_path / "t8.onnx")).run(None, feeds)[0]
    assert top1_agreement(ref, cand) >= 0.9
    assert (tmp_path / "t8.onnx").stat().st_size < (tmp_path / "t.onnx").stat().st_size


def test_quantize_config_validates():
    from zsclip.errors import ConfigError

    with pytest.raises(ConfigError):
        QuantizeConfig(image="fp8")
    assert QuantizeConfig.dynamic_int8().image == "dynamic"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from zsclip.manifest import IOConfig  # noqa: E402
from zsclip_export.onnx_io import check_against_torch, export_text_tower  # noqa: E402
from zsclip_export.quantize import QuantizeConfig, quantize_dynamic_file, top1_agreement  # noqa: E402
from zsclip_train.text_tower import NavecTextTower  # noqa: E402


@pytest.fixture()
def tower():
    rng = np.random.default_rng(1)
    vectors = np.vstack([np.zeros(24), rng.normal(size=(50, 24))]).astype(np.float32)
    tower = NavecTextTower(vectors, np.arange(51), rng.uniform(0.1, 1, 51).astype(np.float32),
                           rng.normal(size=(20, 40)).astype(np.float32), hidden=32)
    return tower.eval()


@pytest.mark.parametrize("batch", [1, 5])
def test_text_tower_onnx_matches_torch(tower, tmp_path, batch):
    io = IOConfig()
    path = tmp_path / "text.onnx"
    tower.half_storage()
    export_text_tower(tower, path, io)
    ids = torch.randint(1, 51, (batch, 6))
    ids[0, 4:] = 0
    error = check_against_torch("text", tower, path, [ids, (ids > 0).long()],
                                [io.text_input_ids, io.text_attention_mask], 1e-4, allow_mismatch=False)
    assert error < 1e-4


def test_dynamic_int8_text_tower_agrees(tower, tmp_path):
    io = IOConfig()
    export_text_tower(tower, tmp_path / "t.onnx", io)
    quantize_dynamic_file(tmp_path / "t.onnx", tmp_path / "t8.onnx", ["MatMul", "Gemm", "Gather"])
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

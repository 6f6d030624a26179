"""DDP with transformers towers: 2 gloo processes under torchrun, the text tower partly unlocked
(`lock_text`, `text_unlocked_layers = 1`) beside a locked CLIP vision tower, match one process on the doubled
batch (the same tolerance as test_ddp.py), and the partial unlocking holds under DDP."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from demo_data import prepare_demo  # noqa: E402
from test_ddp import run_fit  # noqa: E402
from zsclip_train.fit_log import read_metric  # noqa: E402
from zsclip_train.fit_model import load_pretrained  # noqa: E402
from zsclip_train.tiny_towers import write_text, write_vision  # noqa: E402

STEPS = 8


def write_config(root, out, batch_size: int):
    cfg = {"data": str(root / "prep"), "out_dir": str(out), "batch_size": batch_size, "steps": STEPS,
           "warmup_steps": 1, "lr": 3e-3, "num_workers": 0, "log_every": 1, "checkpoint_every": STEPS,
           "device": "cpu", "precision": "fp32",
           "model": {"image_tower": f"hf:{root / 'vision'}", "text_tower": f"hf:{root / 'text'}", "lock_image": True,
                     "lock_text": True, "text_unlocked_layers": 1, "text_pooling": "mean", "embed_dim": 16,
                     "context_length": 8}}
    path = root / f"{out.name}.json"
    path.write_text(json.dumps(cfg))
    return path


def test_two_process_gloo_run_with_hf_towers_matches_one_process(tmp_path):
    prepare_demo(tmp_path, n_images=48, size=40, n_eval=1, shard_size=32)
    write_vision(tmp_path / "vision", image_size=32)
    write_text(tmp_path / "text")
    ddp = run_fit(write_config(tmp_path, tmp_path / "ddp", batch_size=8), nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert len(read_metric(tmp_path / "ddp" / "metrics.csv", "loss")) == STEPS
    single = run_fit(write_config(tmp_path, tmp_path / "single", batch_size=16), nproc=1)
    assert single.returncode == 0, single.stderr[-3000:]

    a = load_pretrained(tmp_path / "ddp" / "final").state_dict()
    b = load_pretrained(tmp_path / "single" / "final").state_dict()
    worst = max(((a[n] - b[n]).abs().max().item(), n) for n in a)
    print(f"DDP (hf: towers) vs one process: max |diff| {worst[0]:.2e} ({worst[1]})")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-3, rtol=1e-3), (name, worst)

    # partial unlocking under DDP: the last BERT block and the projections moved, the first block and the
    # embeddings (and the locked vision tower) are bit-identical to the checkpoints they started from
    from transformers import BertModel, CLIPVisionModel

    start_text = BertModel.from_pretrained(tmp_path / "text").state_dict()
    start_vision = CLIPVisionModel.from_pretrained(tmp_path / "vision").state_dict()
    trained = {k: v for k, v in a.items()}
    text = {k.split("text_tower.module.", 1)[1]: v for k, v in trained.items() if k.startswith("text_tower.module.")}
    vision = {k.split("image_tower.module.", 1)[1]: v for k, v in trained.items() if k.startswith("image_tower.module.")}
    assert text and vision
    for name, tensor in start_vision.items():
        assert torch.equal(vision[name], tensor), name
    frozen = [n for n in start_text if n.startswith(("embeddings.", "encoder.layer.0."))]
    unlocked = [n for n in start_text if n.startswith("encoder.layer.1.") and n.endswith("weight")]
    assert frozen and unlocked
    for name in frozen:
        assert torch.equal(text[name], start_text[name]), name
    assert all(not torch.equal(text[name], start_text[name]) for name in unlocked), unlocked

"""`fit` with transformers towers (tiny random ones, saved locally; no download): LiT on the demo catalogue reaches
zero-shot accuracy, locking leaves frozen weights bit-identical, exact resume holds, and the hand-off exports with
--quantize to a model dir the runtime predicts from, ONNX matching the trained PyTorch model on real photos."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from demo_data import prepare_demo  # noqa: E402
from zsclip.errors import ConfigError  # noqa: E402
from zsclip_train.fit import TrainConfig, fit_model  # noqa: E402
from zsclip_train.fit_log import read_metric  # noqa: E402
from zsclip_train.fit_model import ModelConfig, TwoTower, load_pretrained  # noqa: E402
from zsclip_train.tiny_towers import write_tiny_towers  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads wait on each other (measured 13x slower ops)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    return write_tiny_towers(tmp_path_factory.mktemp("towers"), image_size=32)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_demo(tmp_path_factory.mktemp("hfdata"), n_images=384, size=40, n_eval=4, shard_size=128)


def lit_model(towers, **kw) -> ModelConfig:
    base = dict(image_tower=f"hf:{towers['vision']}", text_tower=f"hf:{towers['text']}", lock_image=True,
                embed_dim=32, context_length=16)
    base.update(kw)
    return ModelConfig(**base)


def config(root, out, model, **kw) -> TrainConfig:
    base = dict(data=root / "prep", out_dir=out, model=model, batch_size=32, steps=6, warmup_steps=1, lr=3e-3,
                num_workers=0, log_every=1, checkpoint_every=3, device="cpu", precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def test_lit_locked_image_tower_hands_off_to_export(prepared, towers, tmp_path):
    """LiT (locked CLIP vision + BERT text): the loss falls, eval runs, the vision tower is bit-identical after
    training, and the hand-off exports (--quantize) and predicts."""
    cfg = config(prepared, tmp_path / "lit", lit_model(towers), steps=30, warmup_steps=3, checkpoint_every=30,
                 log_every=5, eval_dir=prepared / "cat" / "eval", eval_every=15)
    result = fit_model(cfg)
    losses = read_metric(tmp_path / "lit" / "metrics.csv", "loss")
    assert losses[-1] < losses[0] and set(result.scores) == {"colors", "shapes", "mean"}
    final = result.final_dir
    assert (final / "two_tower.json").is_file() and (final / "text" / "tokenizer.json").is_file()
    assert (final / "vision" / "preprocessor_config.json").is_file()
    assert json.loads((final / "two_tower.json").read_text())["text_pooling"] == "cls"  # BERT's default
    model = load_pretrained(final)
    start = TwoTower(lit_model(towers))
    for name, tensor in start.image_tower.state_dict().items():  # lock_image: the vision tower is untouched
        assert torch.equal(tensor, model.image_tower.state_dict()[name]), name
    changed = [n for n, t in start.text_tower.state_dict().items() if not torch.equal(t, model.text_tower.state_dict()[n])]
    assert len(changed) > 20  # the text tower trained
    check_export(final, model, tmp_path)


@pytest.mark.slow
def test_lit_reaches_zero_shot_accuracy(prepared, tmp_path):
    """A tiny vision tower pre-trained on labelled shapes (the stand-in for a CLIP/ImageNet tower), locked, plus a
    random BERT text tower: >= 0.8 zero-shot top-1 on the demo eval set in 300 steps (measured 0.875: colours 1.0,
    shapes 0.75; ~2 min on 2 shared cores with the pre-training)."""
    towers = write_tiny_towers(tmp_path / "towers", image_size=32, pretrain_steps=200)
    model = lit_model(towers, image_tower=f"hf:{towers['vision_pretrained']}", text_pooling="mean")
    cfg = config(prepared, tmp_path / "lit", model, steps=300, warmup_steps=20, checkpoint_every=300, log_every=50,
                 eval_dir=prepared / "cat" / "eval")
    result = fit_model(cfg)
    print(f"LiT, pre-trained tiny vision tower: {result}")
    assert result.scores["mean"] >= 0.8, result.scores


def check_export(final, model, tmp_path):
    """zsclip-export --quantize reads the hand-off; FP32 ONNX matches the trained model on real photos (1e-4);
    the runtime predicts from the model dir."""
    pytest.importorskip("onnx")
    pytest.importorskip("skimage")
    from zsclip.classifier import ZeroShotModel
    from zsclip.manifest import load_manifest
    from zsclip.preprocess import load_and_preprocess
    from zsclip.text import tokenize
    from zsclip_export.hf_export import HfExportConfig, export_hf_model
    from zsclip_export.onnx_io import max_relative_error, run_onnx
    from zsclip_export.sample_data import write_sample_data

    photos = write_sample_data(tmp_path / "photos")
    out = tmp_path / "model"
    export_hf_model(HfExportConfig(source=str(final), out_dir=out, quantize=True, force=True,
                                   calibration_images=photos / "sample" / "img"))
    manifest = load_manifest(out)
    assert manifest.family == "two-tower" and set(manifest.variants) == {"fp32", "int8"}
    assert manifest.preprocess == model.preprocess  # training preprocessed exactly as the runtime will
    files = sorted((photos / "sample" / "img").iterdir())
    pixels = np.stack([load_and_preprocess(p, manifest.preprocess) for p in files])
    with torch.no_grad():
        reference = model.image_proj(model.image_features(torch.from_numpy(pixels))).numpy()
    onnx = run_onnx(out / "image.onnx", {manifest.io.image_input: pixels})
    assert max_relative_error(reference, onnx) <= 1e-4
    runtime = ZeroShotModel(out)
    # training text went through prepare's cleaning (ё -> е, lower case); class names reach the same tokens
    assert runtime.tokenizer.encode("Зелёный КРУГ").ids == runtime.tokenizer.encode("зеленый круг").ids
    classes = ["кошка", "красный круг", "синий квадрат"]
    ids, mask = tokenize(runtime.tokenizer, classes, manifest.text)
    with torch.no_grad():
        text_reference = model.text_proj(model.text_features(torch.from_numpy(ids), torch.from_numpy(mask))).numpy()
    text_onnx = run_onnx(out / "text.onnx", {manifest.io.text_input_ids: ids, manifest.io.text_attention_mask: mask})
    assert max_relative_error(text_reference, text_onnx) <= 1e-4
    for variant in ("fp32", "int8"):
        scores = ZeroShotModel(out, variant=variant).score(
            ZeroShotModel(out, variant=variant).encode_images(pixels),
            ZeroShotModel(out, variant=variant).build_class_embeddings(classes))
        assert scores.shape == (len(files), len(classes)) and np.isfinite(scores).all()


def test_locking_init_checkpoint_and_exact_resume(prepared, towers, tmp_path):
    """init = a whole CLIPModel, lock_text with the last block unlocked: frozen weights bit-identical after steps,
    unlocked ones changed; a run cut at step 3 and resumed equals the uninterrupted one bit for bit."""
    model_cfg = ModelConfig(init=f"hf:{towers['clip']}", embed_dim=32, context_length=32, lock_image=True,
                            lock_text=True, text_unlocked_layers=1)
    dev = prepared / "cat" / "eval"
    fit_model(config(prepared, tmp_path / "straight", model_cfg, eval_dir=dev))
    first = fit_model(config(prepared, tmp_path / "cut", model_cfg, stop_at_step=3, eval_dir=dev))
    assert first.step == 3 and first.final_dir is None
    second = fit_model(config(prepared, tmp_path / "cut", model_cfg, eval_dir=dev))
    assert second.step == 6 and second.final_dir is not None and set(second.scores) == {"colors", "shapes", "mean"}
    a = torch.load(tmp_path / "straight" / "checkpoints" / "step-00000006" / "state.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "step-00000006" / "state.pt", weights_only=False)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert read_metric(tmp_path / "straight" / "metrics.csv", "loss") == read_metric(tmp_path / "cut" / "metrics.csv",
                                                                                     "loss")
    start = TwoTower(model_cfg).state_dict()
    trained = a["model"]
    frozen = [n for n in start if n.startswith("image_tower.") or ".embeddings." in n or ".layers.0." in n]
    unlocked = [n for n in start if (".layers.1." in n and n.startswith("text_tower.")) or "final_layer_norm" in n
                or n in ("image_proj.weight", "text_proj.weight")]
    assert len(frozen) > 20 and len(unlocked) > 10
    for name in frozen:
        assert torch.equal(start[name], trained[name]), name
    for name in unlocked:
        assert not torch.equal(start[name], trained[name]), name
    reloaded = load_pretrained(second.final_dir)  # the two-tower hand-off of an init run
    assert reloaded.logit_scale.item() == pytest.approx(trained["logit_scale"].clamp(max=np.log(100)).item(), abs=1e-5)


def test_lock_options_and_errors(towers):
    model = TwoTower(lit_model(towers, lock_image=True, image_unlocked_layers=1, grad_checkpointing=True))
    trainable = {n for n, p in model.image_tower.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.1." in n or "post_layernorm" in n for n in trainable)
    assert not any(p.requires_grad for n, p in model.text_tower.named_parameters() if ".pooler." in n)  # unused (cls)
    assert model.text_tower.module.is_activation_checkpointing
    model.train()
    assert model.image_tower.training and model.text_tower.training
    locked = TwoTower(lit_model(towers, lock_text=True)).train()
    assert not locked.image_tower.training and not locked.text_tower.training  # eval mode: no dropout
    assert not locked.image_features(torch.zeros(1, 3, 32, 32)).requires_grad  # under no_grad
    norms = TwoTower(lit_model(towers, lock_text=True, freeze_layer_norm=False))
    text_trainable = {n for n, p in norms.text_tower.named_parameters() if p.requires_grad}
    assert text_trainable and all("LayerNorm" in n for n in text_trainable)
    for bad, message in [(dict(image_unlocked_blocks=2), "image_unlocked_blocks"),
                         (dict(image_unlocked_layers=3), "has 2 blocks"),
                         (dict(lock_image=False, image_unlocked_layers=1), "unlocked_layers"),
                         (dict(text_pooling="eos"), "CLIP text model"),
                         (dict(init=f"hf:{towers['clip']}"), "leave image_tower and text_tower unset")]:
        with pytest.raises(ConfigError, match=message):
            TwoTower(lit_model(towers, **bad))
    with pytest.raises(ConfigError, match="not a whole CLIPModel"):
        TwoTower(ModelConfig(init=f"hf:{towers['text']}", embed_dim=32))
    with pytest.raises(ConfigError, match="lock_text"):
        ModelConfig(image_tower="tiny", lock_text=True)
    with pytest.raises(ConfigError, match="its own tokenizer"):
        TrainConfig(data=towers["text"], out_dir=towers["text"], model=lit_model(towers), tokenizer=towers["text"])
    assert dataclasses.replace(lit_model(towers), text_pooling="mean").text_pooling == "mean"


@pytest.mark.parametrize("kind", ["vit-cls", "siglip-vision"])
def test_other_vision_towers_hand_off_to_the_export_loader(towers, tmp_path, kind):
    """A ViTModel (cls pooling, squash preprocessing) or SiglipVisionModel (attention-pool head) as image tower:
    the hand-off loads in zsclip-export's two-tower loader and gives the same embeddings as the training model."""
    from zsclip_export.hf_two_tower import load_two_tower
    from zsclip_train.fit_model import save_pretrained

    vision_dir = tmp_path / kind
    torch.manual_seed(5)
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                 patch_size=8)
    if kind == "vit-cls":
        from transformers import ViTConfig, ViTModel
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

        ViTModel(ViTConfig(**shape)).save_pretrained(vision_dir)
        ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(vision_dir)
    else:
        from transformers import SiglipVisionConfig, SiglipVisionModel
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

        SiglipVisionModel(SiglipVisionConfig(**shape)).save_pretrained(vision_dir)
        SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(vision_dir)
    pooling = "cls" if kind == "vit-cls" else "auto"
    model = TwoTower(lit_model(towers, image_tower=f"hf:{vision_dir}", image_pooling=pooling)).eval()
    assert model.preprocess.resize_mode == "squash"
    final = save_pretrained(model, tmp_path / "final", None, {})
    source = load_two_tower(final)
    assert source.preprocess == model.preprocess
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.image_proj(model.image_features(pixels))
        theirs = source.image_tower(pixels)
        ids, mask = torch.tensor([[2, 10, 11, 3]]), torch.ones(1, 4, dtype=torch.int64)
        text_ours, text_theirs = model.text_proj(model.text_features(ids, mask)), source.text_tower(ids, mask)
    assert torch.allclose(ours, theirs, atol=1e-5) and torch.allclose(text_ours, text_theirs, atol=1e-5)
    assert torch.allclose(load_pretrained(final).encode_image(pixels), model.encode_image(pixels), atol=1e-5)

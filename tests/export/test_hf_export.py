"""`zsclip-export --source` on tiny random checkpoints of every family, built locally (no download).

Each export is checked against its source: ONNX FP32 vs PyTorch within 1e-4 at two batch sizes, tokenizer
ids identical on Russian sentences, the INT8 gate, and the runtime predicting from the model dir.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
transformers = pytest.importorskip("transformers")

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402
from zsclip.classifier import ZeroShotModel  # noqa: E402
from zsclip.manifest import load_manifest  # noqa: E402
from zsclip.text import tokenize  # noqa: E402
from zsclip_export.hf_export import HfExportConfig, export_hf_model  # noqa: E402
from zsclip_export.hf_preprocess import RUSSIAN_SENTENCES  # noqa: E402

CORPUS = [
    "фотография кошки на диване", "ёжик в тумане и ёлка", "чёрный автомобиль bmw x5 2021 года", "собака породы хаски",
    "красный мяч и синий куб", "ночной город и луна", "iphone 13 pro max смартфон", "мороженое пломбир ванильное",
    "птица на ветке", "самолёт в аэропорту", "кошка", "собака", "птица", "автомобиль", "дом", "лес", "море",
]
SIZE = 32
# GOLDEN_MODEL of test_hf_ruclip_bpe: a youtokentome model with 70 ids
from test_hf_ruclip_bpe import GOLDEN_MODEL  # noqa: E402
from upstream_replicas import clip_bpe  # noqa: E402


def vision_config(**extra):
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=SIZE,
                patch_size=8, **extra)


def text_config(vocab_size, **extra):
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, **extra)


def build_clip(out):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    vocab, merges = clip_bpe(CORPUS, 150)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    config = CLIPConfig(
        text_config=text_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                                pad_token_id=tokenizer.pad_token_id),
        vision_config=vision_config(), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}).save_pretrained(out)
    return out


def build_siglip(out):
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    chars = sorted(set("".join(CORPUS).replace(" ", "")))
    words = sorted({"\u2581" + w for line in CORPUS for w in line.split()})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in chars] + [(w, -1.0 - 0.1 * len(w)) for w in words]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="</s>", eos_token="</s>", unk_token="<unk>")
    config = SiglipConfig(text_config=text_config(backend.get_vocab_size(), pad_token_id=1, eos_token_id=1),
                          vision_config=vision_config())
    torch.manual_seed(1)
    model = SiglipModel(config)
    with torch.no_grad():
        model.logit_bias.fill_(-3.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    SiglipImageProcessorPil(size={"height": SIZE, "width": SIZE}).save_pretrained(out)
    return out


RUCLIP_CONFIG = {"embed_dim": 16, "image_resolution": SIZE, "vision_layers": 2, "vision_width": 64, "vision_patch_size": 8,
                 "context_length": 48, "vocab_size": 70, "transformer_width": 32, "transformer_heads": 4,
                 "transformer_layers": 2, "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}


def build_ruclip(out):
    from zsclip_export.ruclip import RuClip

    out.mkdir(parents=True)
    torch.manual_seed(2)
    torch.save(RuClip(RUCLIP_CONFIG).state_dict(), out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps(RUCLIP_CONFIG), encoding="utf-8")
    (out / "bpe.model").write_text(GOLDEN_MODEL.replace(" ", "\n"), encoding="ascii")
    return out


def build_two_tower(out, clip_dir):
    from transformers import BertConfig, BertModel, BertTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from zsclip_export.hf_two_tower import save_two_tower

    words = sorted({w for line in CORPUS for w in line.split()} | set("".join(CORPUS).replace(" ", "")))
    vocab_file = out.parent / "bert_vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [f"##{c}" for c in
                                     sorted(set("".join(CORPUS).replace(" ", "")))]) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(vocab_file), do_lower_case=True)
    torch.manual_seed(3)
    text = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, max_position_embeddings=32))
    vision = transformers.CLIPModel.from_pretrained(str(clip_dir))
    vision_only = transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(**vision_config(projection_dim=16)))
    vision_only.vision_model, vision_only.visual_projection = vision.vision_model, vision.visual_projection
    processor = CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    return save_two_tower(out, text, tokenizer, vision_only, processor, torch.nn.Linear(32, 16), pooling="mean",
                          logit_scale=50.0, context_length=32)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    clip = build_clip(root / "clip")
    return {"clip": clip, "siglip": build_siglip(root / "siglip"), "ruclip": build_ruclip(root / "ruclip"),
            "two-tower": build_two_tower(root / "two", clip)}


def write_images(folder):
    """Six distinct pictures (colours with stripes): random-noise images all look alike to a random model."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    colours = [(220, 20, 20), (20, 200, 30), (25, 30, 210), (240, 240, 240), (10, 10, 10), (240, 200, 20)]
    for i, colour in enumerate(colours):
        array = np.zeros((48, 40, 3), np.uint8) + np.array(colour, np.uint8)
        array[:: i + 2] = 255 - array[:: i + 2]
        Image.fromarray(array).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def exported(sources, images, tmp_path_factory):
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for family, path in sources.items():
        cfg = HfExportConfig(source=str(path), out_dir=root / family, quantize=True, calibration_images=images)
        out[family] = export_hf_model(cfg)
    return out


FAMILIES = ["clip", "siglip", "ruclip", "two-tower"]


@pytest.mark.parametrize("family", FAMILIES)
def test_manifest_records_family_and_gate(exported, family):
    report = exported[family]
    manifest = load_manifest(report.out_dir)
    assert manifest.family == family
    assert manifest.provenance["family"] == family and manifest.provenance["tokenizer"]
    assert "text_pooling" in manifest.provenance
    assert report.checks["tokenizer"]["mismatches"] == 0
    assert max(report.checks["fp32_vs_torch"].values()) < 1e-4
    gate = manifest.variants["int8"].quantization["gate"]
    assert gate[{"both": "top1_agreement", "image": "top1_agreement_image_int8_only",
                 "text": "top1_agreement_text_int8_only"}[manifest.variants["int8"].quantization["int8_towers"]]] >= 0.99


def test_preprocess_and_scores_as_the_source_defines_them(exported):
    clip = load_manifest(exported["clip"].out_dir)
    assert (clip.preprocess.resize_mode, clip.preprocess.interpolation) == ("shortest_edge_center_crop", "bicubic")
    assert clip.preprocess.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    siglip = load_manifest(exported["siglip"].out_dir)
    assert (siglip.preprocess.resize_mode, siglip.preprocess.interpolation) == ("squash", "bicubic")  # SiglipImageProcessor
    assert siglip.preprocess.mean == (0.5, 0.5, 0.5) and siglip.embedding.logit_bias == pytest.approx(-3.0)
    ruclip = load_manifest(exported["ruclip"].out_dir)
    # RuCLIPProcessor: centre square crop, then one bilinear resize; convert('RGB'); Predictor's text rules
    assert (ruclip.preprocess.resize_mode, ruclip.preprocess.interpolation) == ("center_crop_resize", "bilinear")
    assert (ruclip.preprocess.rgb_conversion, ruclip.preprocess.size_rounding) == ("convert", "floor")
    assert (ruclip.text.label_cleaning, ruclip.text.prompt_average) == ("lower_strip", "raw_mean")
    assert (clip.text.label_cleaning, clip.text.prompt_average, clip.preprocess.size_rounding) == ("none", "unit_mean", "floor")
    assert clip.preprocess.reducing_gap is None and clip.preprocess.jpeg_draft_factor == 4
    assert ruclip.text.pad_id == 0 and "eos id 3" in ruclip.provenance["text_pooling"]
    assert load_manifest(exported["two-tower"].out_dir).embedding.logit_scale == 50.0


def source_tokenizer(family, path):
    if family == "ruclip":
        from zsclip_export.ruclip import reference_ids
        from zsclip_export.ruclip_bpe import read_yttm_model

        return reference_ids(path / "bpe.model", read_yttm_model(path / "bpe.model"), 48)
    hf = transformers.AutoTokenizer.from_pretrained(str(path / "text") if family == "two-tower" else str(path))
    return lambda text: hf(text, truncation=True, max_length=64)["input_ids"]


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_ids_identical_to_source(exported, sources, family):
    ours = Tokenizer.from_file(str(exported[family].out_dir / "tokenizer.json"))
    theirs = source_tokenizer(family, sources[family])
    for sentence in RUSSIAN_SENTENCES:
        assert ours.encode(sentence).ids == list(theirs(sentence)), sentence


def onnx_text(model_dir, texts):
    import onnxruntime as ort

    manifest = load_manifest(model_dir)
    ids, mask = tokenize(Tokenizer.from_file(str(model_dir / "tokenizer.json")), texts, manifest.text)
    session = ort.InferenceSession(str(model_dir / "text.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def relative(reference, candidate):
    return float(np.abs(reference - candidate).max() / np.abs(reference).max())


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_source_api(exported, sources, batch):
    """Independent of the exporter's wrappers: the sources' own APIs, used the way their authors do."""
    texts = list(RUSSIAN_SENTENCES[:batch])
    clip = transformers.CLIPModel.from_pretrained(str(sources["clip"])).eval()
    hf = transformers.AutoTokenizer.from_pretrained(str(sources["clip"]))
    with torch.no_grad():
        inputs = hf(texts, padding=True, return_tensors="pt")
        out = clip.get_text_features(**inputs)
        reference = (out.pooler_output if hasattr(out, "pooler_output") else out).numpy()
    assert relative(reference, onnx_text(exported["clip"].out_dir, texts)) < 1e-4

    siglip = transformers.SiglipModel.from_pretrained(str(sources["siglip"])).eval()
    hf = transformers.AutoTokenizer.from_pretrained(str(sources["siglip"]))
    with torch.no_grad():  # SigLIP's recipe: padding="max_length", no attention mask
        inputs = hf(texts, padding="max_length", max_length=64, return_tensors="pt")
        out = siglip.get_text_features(input_ids=inputs["input_ids"])
        reference = (out.pooler_output if hasattr(out, "pooler_output") else out).numpy()
    assert relative(reference, onnx_text(exported["siglip"].out_dir, texts)) < 1e-4

    from zsclip_export.ruclip import read_ruclip

    ruclip = read_ruclip(sources["ruclip"])
    ids_fn = source_tokenizer("ruclip", sources["ruclip"])
    full = torch.zeros(batch, 48, dtype=torch.int64)  # RuCLIPProcessor: padded to context_length with 0
    for row, text in enumerate(texts):
        ids = ids_fn(text)
        full[row, : len(ids)] = torch.tensor(ids)
    with torch.no_grad():  # ruCLIP's own pooling: x[arange, torch.where(input_ids == eos_id)[1]]
        x = ruclip.token_embedding(full) + ruclip.positional_embedding
        x = ruclip.transformer(x.permute(1, 0, 2), ruclip.causal_mask).permute(1, 0, 2)
        reference = (ruclip.ln_final(x)[torch.arange(batch), torch.where(full == 3)[1]] @ ruclip.text_projection).numpy()
    assert relative(reference, onnx_text(exported["ruclip"].out_dir, texts)) < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_runtime_predicts_from_exported_dir(exported, images, family, variant):
    from zsclip.preprocess import load_and_preprocess

    model = ZeroShotModel(exported[family].out_dir, variant=variant)
    classes = ["кошка", "Собака", "ёлка", "автомобиль BMW"]
    pixels = np.stack([load_and_preprocess(p, model.manifest.preprocess) for p in sorted(images.iterdir())[:3]])
    scores = model.score(model.encode_images(pixels), model.build_class_embeddings(classes))
    assert scores.shape == (3, 4) and np.isfinite(scores).all()


def test_gate_refusal_writes_nothing_and_exits_1(sources, images, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from zsclip_export import hf_gate
    from zsclip_export.cli import main

    real = hf_gate.measure_gate

    def failing(*args, **kwargs):
        gate = real(*args, **kwargs)
        return {**gate, "top1_agreement": 0.5, "top1_agreement_image_int8_only": 0.9, "top1_agreement_text_int8_only": 0.8}

    monkeypatch.setattr(hf_gate, "measure_gate", failing)
    out = tmp_path / "model"
    args = ["--source", str(sources["clip"]), "--quantize", "--calib-images", str(images), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "INT8 refused" in result.output and not out.exists()
    forced = CliRunner().invoke(main, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert load_manifest(out).variants["int8"].quantization["gate"]["forced"] is True


def test_siglip_sentencepiece_tokenizer_is_converted_exactly(sources, tmp_path):
    """Real SigLIP checkpoints ship a SentencePiece-only SiglipTokenizer (spiece.model): converted, then checked."""
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    import shutil

    source = tmp_path / "siglip-spm"
    shutil.copytree(sources["siglip"], source)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (source / name).unlink(missing_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_prefix=str(tmp_path / "spiece"), vocab_size=90, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        hard_vocab_limit=False, minloglevel=2)
    tokenizer = transformers.SiglipTokenizer(vocab_file=str(tmp_path / "spiece.model"))
    tokenizer.save_pretrained(source)
    config = transformers.SiglipConfig.from_pretrained(str(source))
    config.text_config.vocab_size = len(tokenizer)
    torch.manual_seed(4)
    transformers.SiglipModel(config).save_pretrained(source)
    report = export_hf_model(HfExportConfig(source=str(source), out_dir=tmp_path / "out"))
    manifest = load_manifest(report.out_dir)
    assert "SentencePiece, converted" in manifest.provenance["tokenizer"]
    ours = Tokenizer.from_file(str(report.out_dir / "tokenizer.json"))
    theirs = transformers.AutoTokenizer.from_pretrained(str(source))
    for sentence in RUSSIAN_SENTENCES + ("Hello, World! {} it's", "a\u00a0b  c"):
        assert ours.encode(sentence).ids == theirs(sentence)["input_ids"], sentence


def test_ruclip_class_names_go_through_the_predictors_path(exported, sources):
    """ruCLIP's Predictor tokenizes template.format(label.lower().strip()): an NBSP or thin space inside a name and a
    decomposed «й» stay as they are (failed before: the runtime NFC-normalised and collapsed whitespace first)."""
    from zsclip.text import expand_prompts

    manifest = load_manifest(exported["ruclip"].out_dir)
    ours = Tokenizer.from_file(str(exported["ruclip"].out_dir / "tokenizer.json"))
    theirs = source_tokenizer("ruclip", sources["ruclip"])
    for name in ["\u00a0Кошка\u00a0", "кот\u00a0пёс", "кот\u2009и\u2009пёс", "кои\u0306ка", " Ёж  колючий "]:
        for template in ("{}", "фото {}"):
            (text,) = expand_prompts(name, (template,), manifest.text.label_cleaning)
            assert ours.encode(text).ids == list(theirs(template.format(name.lower().strip()))), (name, template)

"""Parity of the new families with their upstream libraries' own code, end to end through the runtime.

For each of sentence-transformers multilingual CLIP, M-CLIP and open_clip (XLM-R text tower, and open_clip's own
text transformer with its SimpleTokenizer): a random-init
replica in the real file layout with the real config values (family_replicas.py) is exported with
`zsclip-export --source` (FP32), then
- the exported tokenizer.json gives the upstream tokenizer's ids on a Russian list (NBSP, ё/Ё, й composed and
  decomposed, emoji, tabs, surrounding spaces);
- `zsclip-embed` (JPEG files -> runtime preprocessing -> ONNX) gives the upstream embeddings of the images and
  of the class names: `SentenceTransformer.encode` (pip sentence-transformers), `MultilingualCLIP.forward`
  (pip multilingual-clip) with transformers' CLIP image features for its OpenAI image tower, and open_clip's own
  `CustomTextCLIP.encode_text` / `encode_image` with open_clip's `HFTokenizer` and `load_checkpoint`;
- `zsclip-predict --no-spread --prior-correction 0` picks the upstream argmax class for every photo.

Upstream image preprocessing: sentence-transformers and transformers use CLIPImageProcessor; open_clip's eval
transform needs torchvision (which does not import here), so its steps (Resize of the shortest edge with the long
side truncated, bicubic, CenterCrop, ToTensor, Normalize) are re-stated with PIL in `open_clip_pixels`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402
from family_replicas import (  # noqa: E402
    build_clip_image_repo,
    build_mclip,
    build_open_clip_native,
    build_open_clip_xlmr,
    build_openai_clip,
    build_st_multilingual,
)
from tokenizers import Tokenizer  # noqa: E402
from zsclip.text import clean_label  # noqa: E402
from zsclip_export.hf_export import HfExportConfig, export_hf_model  # noqa: E402

RUSSIAN = [
    "кошка", "Ёлка и ёжик", "йогурт", "и\u0306од", "чайник\u00a0на плите", "собака 🐶", "  пробелы вокруг  ",
    "тонкий\u2009пробел", "ЧЁРНЫЙ КОТ", "Йошкар-Ола", "смайлик 😀 и ё", "автомобиль BMW x5", "таб\tуляция", "море",
]
CLASSES = ["кошка", "собака 🐶", "чёрный автомобиль", "Ёлка", "и\u0306огурт", "ночной\u00a0город", "птица на ветке"]
# (width, height): landscape, portrait, square, tiny, a 12 MP photo
SHAPES = [(640, 480), (300, 500), (256, 256), (61, 97), (4000, 3000)]
TEXT_TOLERANCE = 1e-3


def write_photos(folder):
    """JPEGs of several shapes and sizes: smooth gradients with a few coloured shapes (no EXIF)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    for index, (width, height) in enumerate(SHAPES):
        y, x = np.mgrid[0:height, 0:width]
        array = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                          (x + y + 60 * index) % 256], axis=-1).astype(np.uint8)
        image = Image.fromarray(array)
        draw = ImageDraw.Draw(image)
        for k in range(4):
            box = [width * (k + 1) // 7, height * (k + 2) // 9, width * (k + 3) // 7, height * (k + 4) // 9]
            draw.ellipse(box, fill=((70 * k + 40 * index) % 256, 200 - 40 * k, (30 * index) % 256))
        image.save(folder / f"photo{index}.jpg", quality=92)
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from zsclip.errors import ConfigError
    from zsclip_export.open_clip_import import import_open_clip

    try:
        import_open_clip()
    except ConfigError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("families")
    data = root / "data"
    photos = write_photos(data / "shapes" / "img")
    (data / "shapes" / "classes.json").write_text(json.dumps(CLASSES, ensure_ascii=False), encoding="utf-8")
    sources = {
        "sentence-transformers": (build_st_multilingual(root / "st-text"), build_clip_image_repo(root / "st-image")),
        "mclip": (build_mclip(root / "mclip"), build_openai_clip(root / "openai")),
        "open-clip": (build_open_clip_xlmr(root / "open-clip"), None),
        "open-clip-native": (build_open_clip_native(root / "open-clip-native"), None),
    }
    exported = {}
    for family, (source, image_source) in sources.items():
        out = root / "out" / family
        export_hf_model(HfExportConfig(source=str(source), out_dir=out,
                                       image_source=str(image_source) if image_source else None))
        exported[family] = out
    return {"root": root, "data": data, "photos": photos, "sources": sources, "exported": exported}


def runtime_has_exact():
    """Whether this runtime has manifest 1.3's exact preprocessing (`--exact`, label cleaning per family)."""
    import dataclasses

    from zsclip.manifest import PreprocessConfig

    return "exact" in {f.name for f in dataclasses.fields(PreprocessConfig)}


def default_path_images(setup, family):
    """Image embeddings from zsclip-embed without --exact (the bounded JPEG draft decode stays on)."""
    from zsclip.cli import embed_main
    from zsclip.embed import load_embeddings

    out = setup["root"] / f"{family}-default.npz"
    result = CliRunner().invoke(embed_main, [str(setup["data"]), "--out", str(out), "--model", str(setup["exported"][family]), "-q"])
    assert result.exit_code == 0, result.output
    emb = load_embeddings(out)
    rows = emb.rows("shapes")
    return emb.image_embeds[rows][np.argsort(emb.stem[rows])]


def run_runtime(setup, family):
    """(image embeddings, class embeddings, predictions) from zsclip-embed and zsclip-predict (--exact if there is one)."""
    from zsclip.cli import embed_main, predict_main
    from zsclip.embed import load_embeddings

    model = str(setup["exported"][family])
    exact = ["--exact"] if runtime_has_exact() else []
    out = setup["root"] / f"{family}.npz"
    result = CliRunner().invoke(embed_main, [str(setup["data"]), "--out", str(out), "--model", model, "-q"] + exact)
    assert result.exit_code == 0, result.output
    predictions = setup["root"] / f"{family}.json"
    result = CliRunner().invoke(predict_main, [str(setup["data"]), str(predictions), "--model", model, "--no-spread",
                                               "--prior-correction", "0", "-q"] + exact)
    assert result.exit_code == 0, result.output
    emb = load_embeddings(out)
    rows = emb.rows("shapes")
    order = np.argsort(emb.stem[rows])
    class_embeds, _ = emb.classes("shapes")
    decided = json.loads(predictions.read_text(encoding="utf-8"))["shapes"]
    return emb.image_embeds[rows][order], class_embeds, [decided[f"photo{i}"] for i in range(len(SHAPES))]


def unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def compare(reference, candidate):
    """(max relative error, min cosine) of L2-normalised rows."""
    reference, candidate = unit(reference), unit(candidate)
    return (float(np.abs(reference - candidate).max() / np.abs(reference).max()),
            float((reference * candidate).sum(axis=1).min()))


def clip_processor_pixels(clip_dir, photos):
    """transformers' CLIP image processor (what sentence-transformers and the CLIP model card use)."""
    from PIL import Image

    processor = transformers.AutoImageProcessor.from_pretrained(str(clip_dir))
    return processor(images=[Image.open(p).convert("RGB") for p in photos], return_tensors="pt")["pixel_values"]


def open_clip_pixels(photos, size, mean, std):
    """open_clip's eval transform (torchvision Resize(size) bicubic on the shortest edge, long side int-truncated;
    CenterCrop with rounded offsets; ToTensor; Normalize), re-stated with PIL: torchvision does not import here."""
    from PIL import Image

    out = []
    for path in photos:
        image = Image.open(path).convert("RGB")
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        out.append(((array - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def upstream_sentence_transformers(setup):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from PIL import Image

    text_dir, image_dir = setup["sources"]["sentence-transformers"]
    text_model = sentence_transformers.SentenceTransformer(str(text_dir), device="cpu")
    image_model = sentence_transformers.SentenceTransformer(str(image_dir), device="cpu")

    def ids(text):
        return text_model.tokenize([text])["input_ids"][0].tolist()

    def texts(names):
        return text_model.encode(list(names), convert_to_numpy=True)

    images = image_model.encode([Image.open(p).convert("RGB") for p in setup["photos"]], convert_to_numpy=True)
    return ids, texts, images, clip_processor_pixels(image_dir / "0_CLIPModel", setup["photos"])


def upstream_mclip(setup):
    """multilingual-clip 1.0.10's MultilingualCLIP. Its `from_pretrained` fails under transformers 5 (the model is
    built on the meta device, where its __init__'s AutoModel.from_pretrained(modelBase) is refused), so the test
    does what from_pretrained + its `_load_state_dict_into_model` override amount to: MultilingualCLIP(config)
    (which loads modelBase), then `load_state_dict` of the checkpoint (strict)."""
    pt_multilingual_clip = pytest.importorskip("multilingual_clip.pt_multilingual_clip")
    text_dir, image_dir = setup["sources"]["mclip"]
    with torch.no_grad():
        config = pt_multilingual_clip.MultilingualCLIP.config_class.from_pretrained(str(text_dir))
        model = pt_multilingual_clip.MultilingualCLIP(config)
        model.load_state_dict(torch.load(text_dir / "pytorch_model.bin", weights_only=True))
        model.eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(text_dir))
        clip = transformers.CLIPModel.from_pretrained(str(image_dir)).eval()
        pixels = clip_processor_pixels(image_dir, setup["photos"])
        features = clip.get_image_features(pixel_values=pixels)
        images = (features.pooler_output if hasattr(features, "pooler_output") else features).numpy()

    def ids(text):
        return tokenizer([text], padding=True)["input_ids"][0]

    def texts(names):
        with torch.no_grad():
            return model.forward(list(names), tokenizer).numpy()

    return ids, texts, images, pixels


def upstream_open_clip(setup, key="open-clip"):
    """open_clip's own model (CustomTextCLIP / CLIP from model_cfg, load_checkpoint strict) and tokenizer
    (HFTokenizer / SimpleTokenizer, padded to the context with the pad id, which is stripped for the id comparison)."""
    from zsclip_export.open_clip_import import import_open_clip

    open_clip = import_open_clip()
    folder = setup["sources"][key][0]
    config = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
    model_cfg = config["model_cfg"]
    context = model_cfg["text_cfg"].get("context_length", 77)
    if model_cfg["text_cfg"].get("hf_model_name"):
        local = str(folder / model_cfg["text_cfg"]["hf_model_name"])  # the hub id's files, stored inside the replica
        model_cfg["text_cfg"].update(hf_model_name=local, hf_model_pretrained=False)
        model = open_clip.CustomTextCLIP(**model_cfg).eval()
        tokenizer = open_clip.tokenizer.HFTokenizer(local, context_length=context)
        pad = tokenizer.tokenizer.pad_token_id
    else:
        model = open_clip.CLIP(**model_cfg).eval()
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
        pad = 0
    weights = [p for p in folder.iterdir() if p.name.startswith("open_clip_")and p.suffix in (".bin", ".safetensors")]
    open_clip.load_checkpoint(model, str(weights[0]), strict=True)
    pre = config["preprocess_cfg"]
    pixels = open_clip_pixels(setup["photos"], model_cfg["vision_cfg"]["image_size"], pre["mean"], pre["std"])
    with torch.no_grad():
        images = model.encode_image(pixels).numpy()

    def ids(text):
        row = tokenizer([text])[0].tolist()
        while row and row[-1] == pad:
            row.pop()
        return row

    def texts(names):
        with torch.no_grad():
            return model.encode_text(tokenizer(list(names))).numpy()

    return ids, texts, images, pixels


UPSTREAM = {"sentence-transformers": upstream_sentence_transformers, "mclip": upstream_mclip, "open-clip": upstream_open_clip,
            "open-clip-native": lambda setup: upstream_open_clip(setup, "open-clip-native")}
# End-to-end image embeddings depend on the runtime's preprocessing: with manifest 1.3's `--exact` it is the upstream
# one (bound 1e-3, decisions identical); a runtime without it (<= 1.2: rounded long side, JPEG draft, reducing_gap)
# reaches 0.07-0.11 on these photos, so it is held to 0.25 and its decisions are not compared.
IMAGE_TOLERANCE = 1e-3 if runtime_has_exact() else 0.25


@pytest.mark.slow
@pytest.mark.parametrize("family", list(UPSTREAM))
def test_family_matches_upstream_end_to_end(setup, family, record_property):
    import onnxruntime as ort

    ids, texts, upstream_images, upstream_pixels = UPSTREAM[family](setup)
    ours = Tokenizer.from_file(str(setup["exported"][family] / "tokenizer.json"))
    for text in RUSSIAN:
        assert ours.encode(text).ids == list(ids(text)), (family, text)

    images, class_embeds, decisions = run_runtime(setup, family)
    # class names as the runtime hands them to the tokenizer: unchanged (manifest 1.3 label_cleaning "none", the
    # tokenizer does the family's own cleaning), else zsclip <= 1.2's NFC + whitespace collapse
    cleaned = list(CLASSES) if runtime_has_exact() else [clean_label(name) for name in CLASSES]
    text_error, text_cos = compare(texts(cleaned), class_embeds)
    image_error, image_cos = compare(upstream_images, images)
    session = ort.InferenceSession(str(setup["exported"][family] / "image.onnx"), providers=["CPUExecutionProvider"])
    tower_error, tower_cos = compare(upstream_images, session.run(None, {"pixel_values": upstream_pixels.numpy()})[0])
    upstream_decisions = (unit(upstream_images) @ unit(texts(cleaned)).T).argmax(axis=1).tolist()
    measured = {"tokens": f"{len(RUSSIAN)}/{len(RUSSIAN)}", "text_max_rel": text_error, "text_min_cos": text_cos,
                "image_max_rel": image_error, "image_min_cos": image_cos,
                "image_tower_on_upstream_pixels_max_rel": tower_error, "image_tower_min_cos": tower_cos,
                "decisions": f"{sum(a == b for a, b in zip(decisions, upstream_decisions))}/{len(decisions)}"}
    record_property("parity", measured)
    print(family, measured)
    assert text_error <= TEXT_TOLERANCE and text_cos > 0.9999, measured
    assert tower_error <= 1e-3 and tower_cos > 0.9999, measured  # the exported image tower itself is exact
    assert image_error <= IMAGE_TOLERANCE, measured  # end to end: bounded by the runtime's preprocessing
    if runtime_has_exact():
        assert decisions == upstream_decisions, measured
        # the default path (JPEG draft decode only down to 4x the input size): measured 0.94e-3 .. 1.9e-3
        default_error, default_cos = compare(upstream_images, default_path_images(setup, family))
        print(family, "default path image max rel", default_error, "min cos", default_cos)
        assert default_error <= 3e-3 and default_cos > 0.99999, (default_error, default_cos)

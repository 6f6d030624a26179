"""End-to-end parity with the upstream libraries' own code, per family (clip, siglip, ruclip).

For each family a random-init replica with the real checkpoint's config (`upstream_replicas`) is exported
with `zsclip-export --source`, then run from JPEG/PNG files through `zsclip-embed` and `zsclip-predict
--no-spread` (the CLIs, in-process) and compared with the upstream code run on the same files:

- clip, siglip: transformers' own image processor (`AutoImageProcessor`; without torchvision that is the
  PIL backend), tokenizer and `CLIPModel` / `SiglipModel` (`get_image_features`, `get_text_features`;
  SigLIP's texts padded to 64 as its recipe says). Prompt ensembling is OpenAI's (mean of unit vectors).
- ruclip: pip `ruclip` 0.0.2 as is — `ruclip.model.CLIP`, `RuCLIPProcessor.encode_text` (real youtokentome)
  and `Predictor.get_text_latents` / `run` — with two import shims (`ruclip_upstream`): huggingface_hub's
  removed `cached_download` (used only by `ruclip.load`, a download) and torchvision, which does not import
  beside torch 2.13. The processor's torchvision image transform is therefore replaced by the same calls
  torchvision makes on a PIL image (`ruclip_image_transform`): that one piece is a replica, not upstream.

Checked: token ids of the class-name path identical on a Russian list with NBSP, thin spaces, decomposed «й»,
ё and emoji; image embeddings max relative error <= 1e-3 (photos of 13 shapes, two >= 12 MP, a grey JPEG and
an RGBA PNG); class embeddings likewise; decisions identical. `--exact` and the default (bounded JPEG draft
decode down to >= 4x the input size) are both measured; the default must stay within the bound stated in
export/README-hf.md (image embeddings max relative error <= 2e-3, cosine >= 0.99999).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")
pytest.importorskip("skimage")

from click.testing import CliRunner  # noqa: E402
from upstream_replicas import (  # noqa: E402
    CLASSES,
    RUCLIP_TEMPLATES,
    TOKEN_STRINGS,
    build_clip_b32,
    build_ruclip_b32_384,
    build_siglip_b16,
    ruclip_image_transform,
    write_photos,
)
from zsclip.cli import embed_main, predict_main  # noqa: E402
from zsclip.manifest import load_manifest  # noqa: E402
from zsclip.text import expand_prompts, load_tokenizer  # noqa: E402
from zsclip_export.hf_export import HfExportConfig, export_hf_model  # noqa: E402

pytestmark = pytest.mark.slow

CLIP_TEMPLATES = ("{}", "фото: {}")
IMAGE_TOLERANCE = 1e-3
# Default path (JPEG draft decode down to >= 4x the input size) vs upstream: the bound README-hf states.
# Measured 2026-12-03: image max rel err 5.7e-4 (clip), 1.03e-3 (siglip); min cosine 0.9999993.
DRAFT_MIN_COSINE = 0.99999
DRAFT_MAX_RELATIVE = 2e-3
RESULTS: dict = {}


# ---- upstream ruclip, imported as is -----------------------------------------------------------------


def ruclip_upstream():
    """Import pip `ruclip` 0.0.2 unchanged, with two import shims.

    1. `huggingface_hub.cached_download` was removed (huggingface_hub 0.26); ruclip's `__init__` imports it for
       `ruclip.load` (a hub download, never called here). The shim is a function that refuses to download.
    2. torchvision does not import beside torch 2.13: `ruclip.processor` imports `torchvision.transforms` at module
       level. The shim is an inert module; `ruclip_image_transform` then replaces the processor's transform.
    """
    import huggingface_hub

    if not hasattr(huggingface_hub, "cached_download"):
        def cached_download(*args, **kwargs):
            raise RuntimeError("ruclip.load downloads from the hub; not available in this test")

        huggingface_hub.cached_download = cached_download
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:  # ImportError, or torchvision built for another torch (RuntimeError/OSError)
        inert = types.ModuleType("torchvision.transforms")
        for name in ("Compose", "Lambda", "RandomResizedCrop", "ToTensor", "Normalize"):
            setattr(inert, name, lambda *args, **kwargs: None)
        package = types.ModuleType("torchvision")
        package.transforms = inert
        # Only while ruclip is imported: left in sys.modules, the stand-in made open_clip's own torchvision
        # fallback fail later in the same process (the family parity tests then skipped).
        saved = {name: sys.modules.pop(name, None) for name in ("torchvision", "torchvision.transforms")}
        sys.modules["torchvision"], sys.modules["torchvision.transforms"] = package, inert
        try:
            return pytest.importorskip("ruclip")
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
    return pytest.importorskip("ruclip")


# ---- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity-data")
    dataset = root / "photos"
    write_photos(dataset / "img")
    (dataset / "classes.json").write_text(json.dumps(CLASSES, ensure_ascii=False), encoding="utf-8")
    return root


def run_cli(command, args):
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def runtime_outputs(model_dir, data_dir, out, exact):
    """zsclip-embed and zsclip-predict --no-spread on `data_dir`: (embeddings npz, OUT.json)."""
    flag = ["--exact"] if exact else []
    npz = out / f"emb-{int(exact)}.npz"
    run_cli(embed_main, [data_dir, "--out", npz, "--model", model_dir, "-q", *flag])
    predicted = out / f"out-{int(exact)}.json"
    run_cli(predict_main, [data_dir, predicted, "--model", model_dir, "--no-spread", "-q", *flag])
    with np.load(npz) as data:
        embeds = {str(f): row for f, row in zip(data["filename"], data["image_embeds"])}
        classes = data["class_embeds"]
    return embeds, classes, json.loads(predicted.read_text(encoding="utf-8"))["photos"]


def unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def compare(family, ours_images, ours_classes, ours_decisions, theirs_images, theirs_classes, scale, bias=0.0):
    """Max relative error (max |a - b| / max |b| per row) and min cosine of unit embeddings; decisions."""
    names = sorted(theirs_images)
    a = unit([ours_images[n] for n in names])
    b = unit([theirs_images[n] for n in names])
    image_rel = float((np.abs(a - b).max(axis=1) / np.abs(b).max(axis=1)).max())
    image_cos = float((a * b).sum(axis=1).min())
    ca, cb = unit(ours_classes), unit(theirs_classes)
    text_rel = float((np.abs(ca - cb).max(axis=1) / np.abs(cb).max(axis=1)).max())
    text_cos = float((ca * cb).sum(axis=1).min())
    upstream = (scale * b @ cb.T + bias).argmax(axis=1)
    agree = sum(int(ours_decisions[Path(n).stem]) == int(u) for n, u in zip(names, upstream))
    return {"image_rel": image_rel, "image_cos": image_cos, "text_rel": text_rel, "text_cos": text_cos,
            "decisions": f"{agree}/{len(names)}", "agree": agree == len(names)}


def photo_paths(data_dir):
    return sorted((data_dir / "photos" / "img").iterdir())


def assert_parity(family, exact_stats, default_stats):
    RESULTS[family] = {"exact": exact_stats, "default": default_stats}
    print(f"\n{family}: --exact {exact_stats}\n{family}: default {default_stats}")
    assert exact_stats["image_rel"] <= IMAGE_TOLERANCE and exact_stats["text_rel"] <= IMAGE_TOLERANCE
    assert exact_stats["agree"], exact_stats
    assert default_stats["image_cos"] >= DRAFT_MIN_COSINE and default_stats["image_rel"] <= DRAFT_MAX_RELATIVE
    assert default_stats["text_rel"] <= IMAGE_TOLERANCE


def class_name_ids(model_dir, names, templates):
    """The runtime's class-name path: cleaning + prompt expansion per the manifest, then tokenizer.json."""
    manifest = load_manifest(model_dir)
    tokenizer = load_tokenizer(model_dir / manifest.tokenizer_file)
    texts = [t for name in names for t in expand_prompts(name, templates, manifest.text.label_cleaning)]
    return [enc.ids[: manifest.text.context_length] for enc in tokenizer.encode_batch(texts)]


# ---- clip and siglip: transformers ----------------------------------------------------------------------


def hf_upstream(family, source, data_dir, templates):
    from PIL import Image

    processor = transformers.AutoImageProcessor.from_pretrained(str(source))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
    model_class = transformers.CLIPModel if family == "clip" else transformers.SiglipModel
    model = model_class.from_pretrained(str(source), attn_implementation="eager").eval()

    def features(out):
        return (out.pooler_output if hasattr(out, "pooler_output") else out).numpy()

    images = {}
    with torch.no_grad():
        for path in photo_paths(data_dir):
            with Image.open(path) as image:
                pixels = processor(images=image, return_tensors="pt")["pixel_values"]
            images[path.name] = features(model.get_image_features(pixel_values=pixels))[0]
        prompts = [t.format(name) for name in CLASSES for t in templates]
        if family == "siglip":  # SigLIP's recipe: padded to max_length, no attention mask
            inputs = tokenizer(prompts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
            text = features(model.get_text_features(input_ids=inputs["input_ids"]))
        else:
            inputs = tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
            text = features(model.get_text_features(**inputs))
    classes = unit(unit(text).reshape(len(CLASSES), len(templates), -1).mean(axis=1))  # OpenAI's prompt ensembling
    ids = [tokenizer(t.format(s), truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
           for s in TOKEN_STRINGS for t in templates]
    scale = float(model.logit_scale.detach().exp())
    bias = float(model.logit_bias.detach()) if family == "siglip" else 0.0
    return images, classes, ids, scale, bias


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_transformers_families_match_upstream_end_to_end(family, data_dir, tmp_path):
    build = build_clip_b32 if family == "clip" else build_siglip_b16
    source = build(tmp_path / "source")
    export_hf_model(HfExportConfig(source=str(source), out_dir=tmp_path / "model", prompts=CLIP_TEMPLATES))
    images, classes, ids, scale, bias = hf_upstream(family, source, data_dir, CLIP_TEMPLATES)

    ours_ids = class_name_ids(tmp_path / "model", TOKEN_STRINGS, CLIP_TEMPLATES)
    mismatched = [text for text, a, b in zip([t.format(s) for s in TOKEN_STRINGS for t in CLIP_TEMPLATES], ours_ids, ids)
                  if a != b]
    assert not mismatched, mismatched
    stats = {}
    for exact in (True, False):
        ours_images, ours_classes, decisions = runtime_outputs(tmp_path / "model", data_dir, tmp_path, exact)
        stats[exact] = compare(family, ours_images, ours_classes, decisions, images, classes, scale, bias)
        stats[exact]["tokens"] = f"{len(ids) - len(mismatched)}/{len(ids)}"
    assert_parity(family, stats[True], stats[False])


# ---- ruclip: pip ruclip ---------------------------------------------------------------------------------


def test_ruclip_matches_upstream_end_to_end(data_dir, tmp_path):
    pytest.importorskip("youtokentome")
    ruclip = ruclip_upstream()
    from PIL import Image

    source = build_ruclip_b32_384(tmp_path / "source", ruclip.model.CLIP)
    export_hf_model(HfExportConfig(source=str(source), out_dir=tmp_path / "model", prompts=RUCLIP_TEMPLATES))
    model = ruclip.model.CLIP.from_pretrained(str(source)).eval()
    processor = ruclip.processor.RuCLIPProcessor.from_pretrained(str(source))
    processor.image_transform = ruclip_image_transform(processor)
    # quiet=True would break Predictor.run (it closes a progress bar it never opened)
    predictor = ruclip.predictor.Predictor(model, processor, "cpu", templates=list(RUCLIP_TEMPLATES), bs=4, quiet=False)

    # token ids through the Predictor's class-name path: template.format(label.lower().strip()) -> encode_text
    theirs_ids = []
    for name in TOKEN_STRINGS:
        for template in RUCLIP_TEMPLATES:
            row = processor.encode_text(template.format(name.lower().strip())).tolist()
            theirs_ids.append(row[: row.index(processor.eos_id) + 1])
    ours_ids = class_name_ids(tmp_path / "model", TOKEN_STRINGS, RUCLIP_TEMPLATES)
    mismatched = [i for i, (a, b) in enumerate(zip(ours_ids, theirs_ids)) if a != b]
    assert not mismatched, [(TOKEN_STRINGS[i // len(RUCLIP_TEMPLATES)], ours_ids[i], theirs_ids[i]) for i in mismatched[:3]]

    paths = photo_paths(data_dir)
    with torch.no_grad():
        classes = predictor.get_text_latents(CLASSES).numpy()
        pil = [Image.open(p) for p in paths]
        images = dict(zip((p.name for p in paths), predictor.get_image_latents(pil).numpy()))
        labels = predictor.run(pil, torch.from_numpy(classes))
    for image in pil:
        image.close()
    scale = float(model.logit_scale.detach().exp())
    stats = {}
    for exact in (True, False):
        ours_images, ours_classes, decisions = runtime_outputs(tmp_path / "model", data_dir, tmp_path, exact)
        stats[exact] = compare("ruclip", ours_images, ours_classes, decisions, images, classes, scale)
        stats[exact]["tokens"] = f"{len(theirs_ids) - len(mismatched)}/{len(theirs_ids)}"
        stats[exact]["predictor_run_agrees"] = all(
            int(decisions[p.stem]) == label for p, label in zip(paths, labels))
    assert stats[True]["predictor_run_agrees"], stats
    assert_parity("ruclip", stats[True], stats[False])

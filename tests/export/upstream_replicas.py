"""Random-init replicas of real CLIP-family checkpoints, built locally (no hub), and photos to test them on.

Each replica keeps the real checkpoint's config keys and values (copied from the published config.json,
preprocessor_config.json and tokenizer_config.json of openai/clip-vit-base-patch32,
google/siglip-base-patch16-224 and ai-forever/ruclip-vit-base-patch32-384): image size, patch size, widths,
heads, context length, vocabulary size, special tokens, preprocessing. Only the layer counts are shrunk
(12 -> 2) to keep the test fast, and the tokenizers' vocabularies are learned from a Russian corpus here
(the real vocabularies are hub downloads): the tokenizer *kind and settings* are the real ones (CLIP's
byte-level BPE with `<|startoftext|>`/`<|endoftext|>`, SigLIP's SentencePiece `SiglipTokenizer`, ruCLIP's
YouTokenToMe `bpe.model`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

LAYERS = 2  # the real checkpoints have 12 per tower

# openai/clip-vit-base-patch32/config.json (the keys that shape the model; layer counts shrunk)
CLIP_B32_TEXT = {
    "hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": LAYERS,
    "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 512,
}
CLIP_B32_VISION = {
    "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": LAYERS,
    "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "projection_dim": 512,
}
CLIP_B32 = {"projection_dim": 512, "logit_scale_init_value": 2.6592}
# its preprocessor_config.json, in the legacy format the real file uses (integer size / crop_size)
CLIP_B32_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}

# google/siglip-base-patch16-224/config.json and preprocessor_config.json
SIGLIP_B16_TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": LAYERS,
                   "vocab_size": 32000, "max_position_embeddings": 64}
SIGLIP_B16_VISION = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": LAYERS,
                     "image_size": 224, "patch_size": 16}
SIGLIP_B16_PREPROCESSOR = {
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor",
    "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224},
}

# ai-forever/ruclip-vit-base-patch32-384/config.json (mean/std: RuCLIPProcessor's defaults)
RUCLIP_B32_384 = {
    "embed_dim": 512, "image_resolution": 384, "vision_layers": LAYERS, "vision_width": 768, "vision_patch_size": 32,
    "context_length": 77, "vocab_size": 49408, "transformer_width": 512, "transformer_heads": 8,
    "transformer_layers": LAYERS,
}

# ruCLIP's Predictor default templates (ruclip/predictor.py)
RUCLIP_TEMPLATES = ("{}", "фото, на котором изображено {}", "изображение с {}", "картинка с {}", "фото с {}",
                    "на фото видно {}")

# Class names and token test strings: NBSP, thin space, decomposed «й», ё, emoji, mixed case, padding spaces.
CLASSES = ["кошка", "Собака", "ёж", "чайник", "ко\u0439ка", "кои\u0306ка", "красный\u00a0автомобиль", "ракета 🚀",
           " Морской  конёк ", "кофе\u2009с\u2009молоком", "астронавт", "ЁЛКА"]
TOKEN_STRINGS = CLASSES + [
    "Фотография кошки на диване", "ЁЖИК В ТУМАНЕ и ёлка", "\u00a0ёж\u00a0", "й", "и\u0306", "Й", "И\u0306",
    "самолёт\u202fТу-154", "город 🌃 и луна 🌙", "собака, 3 месяца!", "\tтабуляция\t", "", "   ",
    "iPhone 13 Pro Max — смартфон", "чёрный\u2003кот", "Ёлочные игрушки", "ночь\u3000день", "e\u0301cole",
]

CORPUS = [
    "фотография кошки на диване", "ёжик в тумане и ёлка", "чёрный автомобиль года", "собака породы хаски",
    "красный мяч и синий куб", "ночной город и луна", "смартфон на столе", "мороженое пломбир ванильное",
    "птица на ветке", "самолёт в аэропорту", "кошка", "собака", "птица", "автомобиль", "дом", "лес", "море",
    "чайник", "кофе с молоком", "морской конёк", "ракета", "астронавт", "койка", "фото, на котором изображено",
    "изображение с", "картинка с", "фото с", "на фото видно", "ёлочные игрушки", "месяца", "луна", "город",
    "photo of a cat", "iphone pro max", "туман", "день и ночь", "табуляция",
]


def learn_merges(words: List[List[str]], n_merges: int) -> List[Tuple[str, str]]:
    """A deterministic BPE learner (ties broken by the pair itself: tokenizers' trainer breaks them differently from
    run to run)."""
    words = [list(w) for w in words]
    merges = []
    for _ in range(n_merges):
        counts: Dict[Tuple[str, str], int] = {}
        for word in words:
            for pair in zip(word, word[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = max(counts.items(), key=lambda item: (item[1], item[0]))[0]
        merges.append(best)
        for word in words:
            i = 0
            while i < len(word) - 1:
                if (word[i], word[i + 1]) == best:
                    word[i : i + 2] = [word[i] + word[i + 1]]
                i += 1
    return merges


def clip_bpe(corpus: List[str], n_merges: int) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """CLIP's byte-level BPE learned on `corpus`: (vocab, merges). `<|endoftext|>` is the largest id, as in the real
    vocabulary (legacy eos_token_id=2 pools at argmax(ids))."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    backend = CLIPTokenizer().backend_tokenizer
    words = []
    for line in corpus:
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(line)):
            words.append(list(piece[:-1]) + [piece[-1] + "</w>"])
    merges = learn_merges(words, n_merges)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    pieces = sorted(alphabet) + sorted(c + "</w>" for c in alphabet) + ["".join(m) for m in merges]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces + ["<|startoftext|>", "<|endoftext|>"]))}
    return vocab, merges


def build_clip_b32(out: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab, merges = clip_bpe(CORPUS, 300)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    config = CLIPConfig(text_config=CLIP_B32_TEXT, vision_config=CLIP_B32_VISION, **CLIP_B32)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(CLIP_B32_PREPROCESSOR), encoding="utf-8")
    return out


def build_siglip_b16(out: Path) -> Path:
    import sentencepiece as spm
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipTokenizer

    out.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_prefix=str(out.parent / "siglip-spiece"), vocab_size=200,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", hard_vocab_limit=False, minloglevel=2)
    # google/siglip-base-patch16-224/tokenizer_config.json: </s> pads and ends, lower-cased, 64 tokens
    tokenizer = SiglipTokenizer(vocab_file=str(out.parent / "siglip-spiece.model"), model_max_length=64,
                                do_lower_case=True, pad_token="</s>", eos_token="</s>", unk_token="<unk>")
    config = SiglipConfig(text_config=SIGLIP_B16_TEXT, vision_config=SIGLIP_B16_VISION)
    torch.manual_seed(1)
    SiglipModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(SIGLIP_B16_PREPROCESSOR), encoding="utf-8")
    return out


def build_ruclip_b32_384(out: Path, model_class) -> Path:  # noqa: ANN001 - ruclip.model.CLIP or zsclip's RuClip
    """config.json + pytorch_model.bin of `model_class` (random init) + a YouTokenToMe bpe.model trained here."""
    import torch
    import youtokentome as yttm

    out.mkdir(parents=True, exist_ok=True)
    corpus = out.parent / "ruclip-corpus.txt"
    corpus.write_text("\n".join(CORPUS * 5) + "\n", encoding="utf-8")
    yttm.BPE.train(data=str(corpus), model=str(out / "bpe.model"), vocab_size=300, n_threads=1)
    (out / "config.json").write_text(json.dumps(RUCLIP_B32_384), encoding="utf-8")
    torch.manual_seed(2)
    model = model_class(**RUCLIP_B32_384) if model_class.__name__ == "CLIP" else model_class(RUCLIP_B32_384)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    return out


def ruclip_image_transform(processor):  # noqa: ANN001, ANN201
    """RuCLIPProcessor.image_transform, as torchvision computes it on a PIL image:

    Lambda(convert('RGB') unless RGB); RandomResizedCrop(size, scale=(1, 1), ratio=(1, 1)) -- every try draws
    area = W*H and ratio 1, so w = h = round(sqrt(W*H)), which fits a square image (taken whole) and one whose
    sides differ by 1 (offset drawn at random upstream, 0 here: no test photo has that shape); otherwise the
    fallback takes the centre square, offsets floored -- then F.resized_crop = PIL crop + PIL
    resize((size, size), BILINEAR); ToTensor (/255, CHW); Normalize(mean, std).
    """
    import math

    import torch
    from PIL import Image

    mean = torch.tensor(processor.mean).view(3, 1, 1)
    std = torch.tensor(processor.std).view(3, 1, 1)
    size = processor.image_size

    def transform(image):
        image = image.convert("RGB") if image.mode != "RGB" else image
        width, height = image.size
        side = int(round(math.sqrt(width * height)))
        if not (0 < side <= width and 0 < side <= height):
            side = min(width, height)
        top, left = (height - side) // 2, (width - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
        return (tensor - mean) / std

    return transform


# (width, height, format): landscape/portrait 12 MP, phone and web sizes, panoramas, tiny, odd, square, grey, RGBA.
PHOTO_SHAPES = [
    (4240, 3000, "JPEG"), (3000, 4000, "JPEG-progressive"), (1920, 1080, "JPEG"), (1080, 1920, "JPEG"),
    (640, 480, "JPEG"), (451, 300, "JPEG"), (224, 224, "JPEG"), (1000, 240, "JPEG"), (150, 900, "JPEG"),
    (53, 37, "JPEG"), (1001, 999, "JPEG"), (383, 385, "JPEG-grey"), (640, 400, "PNG-RGBA"),
]


def write_photos(folder: Path) -> List[Path]:
    """Photos of many shapes and sizes (one >= 12 MP each way) from scikit-image's sample photos."""
    import skimage.data as samples
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = [samples.astronaut(), samples.coffee(), samples.chelsea(), samples.rocket(), samples.hubble_deep_field()]
    paths = []
    for i, (width, height, kind) in enumerate(PHOTO_SHAPES):
        image = Image.fromarray(sources[i % len(sources)]).resize((width, height), Image.Resampling.BICUBIC)
        if kind == "JPEG-grey":
            image = image.convert("L")
        if kind == "PNG-RGBA":
            alpha = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
            image.putalpha(Image.fromarray(alpha))
            path = folder / f"p{i:02d}_{width}x{height}.png"
            image.save(path)
        else:
            path = folder / f"p{i:02d}_{width}x{height}.jpg"
            image.save(path, "JPEG", quality=92, progressive=kind == "JPEG-progressive")
        paths.append(path)
    return paths

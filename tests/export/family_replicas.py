"""Random-init replicas of the real multilingual checkpoints, in their real file layouts (no download).

The config files come from data/real_family_configs.json (the published checkpoints' keys and values); only
widths, depths and vocabularies are shrunk (SHRINK) so the tests stay fast. Tokenizers are small ones of the
real kinds (DistilBERT WordPiece, cased; XLM-R SentencePiece-Unigram with its special ids), learned from
Russian text.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data" / "real_family_configs.json"
REAL = json.loads(DATA.read_text(encoding="utf-8"))
SIZE = 32
SHRINK_TEXT = {"distilbert": dict(dim=32, hidden_dim=64, n_layers=2, n_heads=4),
               "xlm-roberta": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)}
SHRINK_CLIP_TEXT = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2)
SHRINK_CLIP_VISION = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                          image_size=SIZE, patch_size=8)
EMBED = 16  # the real 512, shrunk
CORPUS = [
    "фотография кошки на диване", "ёжик в тумане и ёлка", "чёрный автомобиль bmw x5 2021 года", "собака породы хаски",
    "красный мяч и синий куб", "ночной город и луна", "iphone 13 pro max смартфон", "мороженое пломбир ванильное",
    "птица на ветке", "самолёт в аэропорту", "кошка", "собака", "птица", "автомобиль", "дом", "лес", "море", "йогурт",
    "чайник", "ёлочная игрушка", "Ель", "Йошкар-Ола",
]


def write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


def wordpiece_tokenizer(out: Path):
    """A cased multilingual-style DistilBERT tokenizer (WordPiece, do_lower_case False, strip_accents None)."""
    from transformers import DistilBertTokenizer

    chars = sorted(set("".join(CORPUS).replace(" ", "")) | set("ёйЁЙ"))
    words = sorted({w for line in CORPUS for w in line.split()})
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + chars
    vocab += [f"##{c}" for c in chars]
    vocab_file = out / "vocab.txt"
    vocab_file.parent.mkdir(parents=True, exist_ok=True)
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    settings = REAL["sentence-transformers/clip-ViT-B-32-multilingual-v1"]["tokenizer_config.json"]
    return DistilBertTokenizer(vocab_file=str(vocab_file), do_lower_case=settings["do_lower_case"],
                               strip_accents=settings["strip_accents"], tokenize_chinese_chars=settings["tokenize_chinese_chars"],
                               model_max_length=settings["model_max_length"])


def xlmr_tokenizer():
    """An XLM-R tokenizer (SentencePiece Unigram; <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last) over Russian pieces."""
    from transformers import XLMRobertaTokenizer

    chars = sorted(set("".join(CORPUS).replace(" ", "")) | set("ёйЁЙ"))
    words = sorted({"\u2581" + w for line in CORPUS for w in line.split()})
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in chars] + [(w, -1.0 - 0.1 * len(w)) for w in words] + [("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=pieces, model_max_length=512)


def clip_config(real: dict):
    from transformers import CLIPConfig

    text = {**real["text_config"], **SHRINK_CLIP_TEXT}
    vision = {**real["vision_config"], **SHRINK_CLIP_VISION}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=EMBED,
                      logit_scale_init_value=real["logit_scale_init_value"])


def build_clip_image_repo(out: Path, seed: int = 10) -> Path:
    """sentence-transformers/clip-ViT-B-32: modules.json + 0_CLIPModel/ (CLIPModel, tokenizer, processor)."""
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    real = REAL["sentence-transformers/clip-ViT-B-32"]
    write(out / "modules.json", real["modules.json"])
    torch.manual_seed(seed)
    model_dir = out / "0_CLIPModel"
    CLIPModel(clip_config(real["0_CLIPModel/config.json"])).save_pretrained(model_dir)
    vocab = {c: i for i, c in enumerate(["<|startoftext|>", "<|endoftext|>"] + [chr(i) + "</w>" for i in range(97, 123)])}
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(model_dir)
    processor = dict(real["0_CLIPModel/preprocessor_config.json"])
    CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE},
                          image_mean=processor["image_mean"], image_std=processor["image_std"],
                          resample=processor["resample"]).save_pretrained(model_dir)
    return out


def build_openai_clip(out: Path, seed: int = 11) -> Path:
    """openai/clip-vit-base-patch32 (a plain CLIPModel folder): M-CLIP's image tower."""
    build_clip_image_repo(out / "st", seed)
    return out / "st" / "0_CLIPModel"


def build_st_multilingual(out: Path, seed: int = 12) -> Path:
    """sentence-transformers/clip-ViT-B-32-multilingual-v1: DistilBERT at the root, 1_Pooling mean, 2_Dense no bias."""
    from safetensors.torch import save_file
    from transformers import DistilBertConfig, DistilBertModel

    real = REAL["sentence-transformers/clip-ViT-B-32-multilingual-v1"]
    tokenizer = wordpiece_tokenizer(out)
    config = {k: v for k, v in real["config.json"].items() if k != "architectures"}
    config.update(SHRINK_TEXT["distilbert"], vocab_size=len(tokenizer))
    torch.manual_seed(seed)
    DistilBertModel(DistilBertConfig(**config)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        write(out / name, real[name])
    write(out / "1_Pooling/config.json", {**real["1_Pooling/config.json"], "word_embedding_dimension": config["dim"]})
    dense = {**real["2_Dense/config.json"], "in_features": config["dim"], "out_features": EMBED}
    write(out / "2_Dense/config.json", dense)
    linear = torch.nn.Linear(dense["in_features"], dense["out_features"], bias=dense["bias"])
    save_file({"linear.weight": linear.weight.detach().contiguous()}, str(out / "2_Dense/model.safetensors"))
    return out


def build_mclip(out: Path, seed: int = 13) -> Path:
    """M-CLIP/XLM-Roberta-Large-Vit-B-32: config.json (M-CLIP) + pytorch_model.bin (transformer.*, LinearTransformation.*)
    + the XLM-R tokenizer; modelBase is a local folder beside it holding the (shrunk) xlm-roberta-large config."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    real = REAL["M-CLIP/XLM-Roberta-Large-Vit-B-32"]
    tokenizer = xlmr_tokenizer()
    base = {k: v for k, v in real["xlm-roberta-large/config.json"].items() if k != "architectures"}
    base.update(SHRINK_TEXT["xlm-roberta"], vocab_size=len(tokenizer))
    base_dir = out.parent / f"{out.name}-xlm-roberta-large"
    torch.manual_seed(seed + 100)
    XLMRobertaModel(XLMRobertaConfig(**base)).save_pretrained(base_dir)  # the pre-trained base (upstream loads it first)
    config = {**real["config.json"], "modelBase": str(base_dir), "transformerDimensions": base["hidden_size"], "numDims": EMBED}
    write(out / "config.json", config)
    torch.manual_seed(seed)
    encoder = XLMRobertaModel(XLMRobertaConfig(**base))
    linear = torch.nn.Linear(base["hidden_size"], EMBED)
    state = {f"transformer.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"LinearTransformation.{k}": v for k, v in linear.state_dict().items()})
    torch.save(state, out / "pytorch_model.bin")
    tokenizer.save_pretrained(out)
    return out


def build_open_clip_xlmr(out: Path, seed: int = 14) -> Path:
    """laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k: open_clip_config.json + open_clip_pytorch_model.bin;
    hf_model_name / hf_tokenizer_name point at a folder inside the checkpoint with the (shrunk) xlm-roberta-base config
    and the tokenizer (the real one names the hub id "xlm-roberta-base")."""
    from zsclip_export.open_clip_import import import_open_clip

    open_clip = import_open_clip()
    real = REAL["laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k"]
    tokenizer = xlmr_tokenizer()
    base = {k: v for k, v in real["xlm-roberta-base/config.json"].items() if k != "architectures"}
    base.update(SHRINK_TEXT["xlm-roberta"], vocab_size=len(tokenizer))
    from transformers import XLMRobertaConfig

    XLMRobertaConfig(**base).save_pretrained(out / "xlm-roberta-base")
    tokenizer.save_pretrained(out / "xlm-roberta-base")
    config = json.loads(json.dumps(real["open_clip_config.json"]))
    model_cfg = config["model_cfg"]
    model_cfg["embed_dim"] = EMBED
    model_cfg["vision_cfg"].update(image_size=SIZE, layers=2, width=32, patch_size=8, head_width=8)
    write(out / "open_clip_config.json", config)
    cfg = json.loads(json.dumps(model_cfg))
    cfg["text_cfg"].update(hf_model_name=str(out / "xlm-roberta-base"), hf_model_pretrained=False)
    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(**cfg)
    torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
    return out


def build_open_clip_native(out: Path, seed: int = 15) -> Path:
    """laion/CLIP-ViT-B-32-laion2B-s34B-b79K: open_clip's own text transformer (SimpleTokenizer BPE, vocab 49408 kept,
    context 77), open_clip_config.json + open_clip_model.safetensors."""
    from safetensors.torch import save_file
    from zsclip_export.open_clip_import import import_open_clip

    open_clip = import_open_clip()
    config = json.loads(json.dumps(REAL["laion/CLIP-ViT-B-32-laion2B-s34B-b79K"]["open_clip_config.json"]))
    model_cfg = config["model_cfg"]
    model_cfg["embed_dim"] = EMBED
    model_cfg["vision_cfg"].update(image_size=SIZE, layers=2, width=32, patch_size=8, head_width=8)
    model_cfg["text_cfg"].update(width=32, heads=4, layers=2)
    write(out / "open_clip_config.json", config)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    return out

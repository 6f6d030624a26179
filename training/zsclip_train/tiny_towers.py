"""Tiny random transformers towers, saved locally with `save_pretrained` (tests and the CPU demo; no download).

    python -m zsclip_train.tiny_towers OUT [--image-size 32]

writes OUT/vision (CLIPVisionModel + CLIPImageProcessor config), OUT/text (BertModel + a WordPiece BertTokenizer
over the demo catalogue's words) and OUT/clip (a whole CLIPModel with a character-level CLIP tokenizer, for
`init`). Shapes are real ones scaled down (2 blocks, width 32); the weights are random. With --pretrain-steps N
also OUT/vision_pretrained: a tiny CLIPVisionModel pre-trained N steps on labelled generated shapes, the stand-in
for an ImageNet / CLIP-pretrained tower that LiT locks (a locked *random* tower cannot learn shapes: a linear
probe on its features tops out near 0.5 on the demo's shapes, measured).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Iterable

from zsclip_train.data_demo import COLORS, NOISE, SHAPES, draw_shape

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIPImageProcessor's defaults, written into its config
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def demo_words() -> list:
    words = [*COLORS, *SHAPES, "цвет", *" ".join(NOISE).split()]
    return sorted({w.lower().replace("ё", "е") for w in words})  # the form prepare's cleaning gives


def vision_config(image_size: int, **extra: int) -> Dict[str, Any]:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=image_size,
                patch_size=max(4, image_size // 8), **extra)


def write_image_processor(out: Path, image_size: int) -> None:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                          image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(out)


def write_vision(out: Path, image_size: int = 32, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    CLIPVisionModel(CLIPVisionConfig(**vision_config(image_size))).save_pretrained(out)
    write_image_processor(out, image_size)
    return out


def pretrain_vision(model: Any, preprocess: Any, steps: int, batch_size: int = 64, seed: int = 0) -> None:
    """Supervised pre-training on the demo's 12 colour x shape classes (the tiny stand-in for ImageNet pre-training,
    so a *locked* tower has features worth locking): AdamW, one-cycle LR, a pool of 1024 generated pictures."""
    import random

    import numpy as np
    import torch
    from zsclip.preprocess import preprocess_image

    rng = random.Random(seed)
    names, labels, pictures = list(COLORS), [], []
    for _ in range(1024):
        color, shape = rng.randrange(len(names)), rng.randrange(len(SHAPES))
        pictures.append(preprocess_image(draw_shape(names[color], SHAPES[shape], 40, rng), preprocess))
        labels.append(color * len(SHAPES) + shape)
    pixels, targets = torch.from_numpy(np.stack(pictures)), torch.tensor(labels)
    head = torch.nn.Linear(model.config.hidden_size, len(names) * len(SHAPES))
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=4e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 4e-3, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(targets), (batch_size,), generator=generator)
        loss = torch.nn.functional.cross_entropy(head(model(pixel_values=pixels[rows]).pooler_output), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


def write_pretrained_vision(out: Path, image_size: int = 32, steps: int = 120, seed: int = 3) -> Path:
    """A tiny CLIPVisionModel (1 block, width 48, 4-pixel patches) pre-trained with `pretrain_vision`."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel
    from zsclip.manifest import PreprocessConfig

    torch.manual_seed(seed)
    config = dict(vision_config(image_size), hidden_size=48, intermediate_size=96, num_hidden_layers=1, patch_size=4)
    model = CLIPVisionModel(CLIPVisionConfig(**config))
    preprocess = PreprocessConfig(image_size, "shortest_edge_center_crop", "bicubic", CLIP_MEAN, CLIP_STD)  # type: ignore[arg-type]
    pretrain_vision(model, preprocess, steps, seed=seed)
    model.save_pretrained(out)
    write_image_processor(out, image_size)
    return out


def write_text(out: Path, words: Iterable[str] = (), seed: int = 1, dropout: float = 0.0) -> Path:
    """A BertModel + WordPiece tokenizer (lowercase, accents kept) whose vocabulary holds `words` whole, and every
    character as a start and a ## piece."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted(set(words) or demo_words())
    chars = sorted(set("".join(words)) | set("0123456789!?.,-:()/"))
    pieces = dict.fromkeys(SPECIALS + words + chars + [f"##{c}" for c in chars])
    tokenizer = BertTokenizer(vocab={p: i for i, p in enumerate(pieces)}, do_lower_case=True, strip_accents=False)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_clip(out: Path, image_size: int = 32, projection_dim: int = 32, seed: int = 2, text_layers: int = 2) -> Path:
    """A whole CLIPModel with a byte-level CLIP tokenizer without merges (one token per byte)."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    pieces = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=[])
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=text_layers,
                num_attention_heads=4, max_position_embeddings=64, eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision_config(image_size),
                         projection_dim=projection_dim)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_image_processor(out, image_size)
    return out


def write_tiny_towers(out: Path, image_size: int = 32, pretrain_steps: int = 0) -> Dict[str, Path]:
    """OUT/vision, OUT/text, OUT/clip; with pretrain_steps > 0 also OUT/vision_pretrained (`write_pretrained_vision`)."""
    out = Path(out)
    towers = {"vision": write_vision(out / "vision", image_size), "text": write_text(out / "text"),
              "clip": write_clip(out / "clip", image_size)}
    if pretrain_steps:
        towers["vision_pretrained"] = write_pretrained_vision(out / "vision_pretrained", image_size, pretrain_steps)
    return towers


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--pretrain-steps", type=int, default=0, help="also write vision_pretrained (see pretrain_vision)")
    args = parser.parse_args()
    for name, path in write_tiny_towers(args.out, args.image_size, args.pretrain_steps).items():
        print(f"{name}: {path}")

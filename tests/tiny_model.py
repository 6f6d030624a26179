"""A tiny, exactly predictable zsclip model directory built with `onnx.helper` (no torch, no download).

Image tower: the mean (R, G, B) of the normalised input -> a 3-d embedding.
Text tower: masked mean of per-token 3-d vectors; "красный" = R, "зеленый" = G, "синий" = B.
So a red image is classified as "красный", and so on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from zsclip.manifest import EmbeddingConfig, ModelManifest, PreprocessConfig, TextConfig, Variant, write_manifest

WORDS = ["[PAD]", "[UNK]", "красный", "зеленый", "синий", "цвет", "фото"]
WORD_VECTORS = np.array(
    [[0, 0, 0], [0.1, 0.1, 0.1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2]],
    dtype=np.float32,
)


def image_graph():
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["pixel_values"], ["rgb4"], axes=[2, 3], keepdims=0),
        # shift from [-1, 1] to [0, 2] so embeddings stay non-negative
        helper.make_node("Add", ["rgb4", "one"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def text_graph():
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "eps"], ["safe"]),
        helper.make_node("Div", ["summed", "safe"], ["text_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(WORD_VECTORS, "table"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
            numpy_helper.from_array(np.array([1e-6], dtype=np.float32), "eps"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def tiny_tokenizer():
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace("ё", "е")])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def build_tiny_model(out: Path, with_int8: bool = True) -> Path:
    """Write the tiny model directory to `out` and return it."""
    import onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(image_graph(), str(out / "image.onnx"))
    onnx.save(text_graph(), str(out / "text.onnx"))
    tiny_tokenizer().save(str(out / "tokenizer.json"))
    variants = {"fp32": Variant("image.onnx", "text.onnx", {"method": "none"})}
    if with_int8:  # same graphs under another name: enough to test variant selection
        for name in ("image", "text"):
            (out / f"{name}.int8.onnx").write_bytes((out / f"{name}.onnx").read_bytes())
        variants["int8"] = Variant("image.int8.onnx", "text.int8.onnx", {"method": "copy-for-tests"})
    manifest = ModelManifest(
        model_id="tiny-rgb",
        family="test",
        embedding=EmbeddingConfig(dim=3, norm="l2", logit_scale=10.0),
        preprocess=PreprocessConfig(image_size=16, resize_mode="squash", interpolation="bilinear"),
        text=TextConfig(context_length=8, pad_id=0, unk_id=1, prompts=("{}", "фото {}")),
        variants=variants,
        provenance={"builder": "tests/tiny_model.py"},
    )
    write_manifest(out, dataclasses.replace(manifest))
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))

"""Dynamic INT8 for transformer towers: weight MatMul/Gemm (and the text tower's embedding tables).

Only nodes whose weight is a constant are quantized, so activation x activation MatMuls
(attention scores) and the patch-embedding Conv stay FP32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Sequence

logger = logging.getLogger(__name__)


def weight_nodes(path: Path, op_types: Sequence[str]) -> List[str]:
    """Names of `op_types` nodes with a constant (initializer) weight input."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {init.name for init in graph.initializer}
    constants.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    names = []
    for node in graph.node:
        if node.op_type not in op_types:
            continue
        weight = node.input[0] if node.op_type == "Gather" else (node.input[1] if len(node.input) > 1 else "")
        if weight in constants:
            names.append(node.name)
    return names


def quantize_tower(source: Path, target: Path, op_types: Sequence[str]) -> Dict[str, object]:
    """Dynamic INT8 (signed weights, per output channel) of the constant-weight `op_types` nodes of `source`.

    Returns what was quantized (for the manifest).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from zsclip_export.quantize import third_party_logs

    nodes = weight_nodes(source, op_types)
    with third_party_logs():
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
            nodes_to_quantize=nodes, per_channel=True, extra_options={"EnableSubgraph": False},
        )
    logger.info("%s: %d nodes quantized (%s)", target.name, len(nodes), ", ".join(op_types))
    return {"method": "dynamic-int8 (per-channel s8 weights, u8 activations quantized at run time)",
            "op_types": list(op_types), "nodes": len(nodes),
            "kept_fp32": "activation x activation MatMuls, Conv (patch embedding), LayerNorm, Softmax"}

"""The PyTorch eager FP32 baseline: the model dir's image tower rebuilt in torch (imported lazily).

The hook is the manifest's provenance, written by zsclip-export:

- `"torch_reference": "package.module:function"`: `function(manifest)` returns an `nn.Module`
  mapping pixels [B, 3, S, S] to image embeddings [B, D]; or
- `"backbone": "lite2"` (optionally `"temperature": 1.0`): the tower is
  `zsclip_export.image_tower.ConceptImageTower(load_backbone(key)[0], temperature)`.

Only the image tower runs in torch; class-name embeddings come from the ONNX fp32 text tower
(they are part of cold start, not of the per-image cost being compared).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable, Mapping, Optional

import numpy as np
from zsclip.classifier import normalize_rows
from zsclip.errors import ConfigError
from zsclip.manifest import ModelManifest

INSTALL_HINT = "pip install -e '.[export]' (after the CPU torch build)"


def baseline_unavailable(manifest: ModelManifest) -> Optional[str]:
    """Why the torch baseline cannot run for this model (None when it can). Imports nothing heavy."""
    if importlib.util.find_spec("torch") is None:
        return f"torch is not installed; {INSTALL_HINT}"
    provenance = manifest.provenance
    if "torch_reference" in provenance:
        module = str(provenance["torch_reference"]).partition(":")[0]
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return f"torch_reference module {module!r} is not importable"
        return None
    if "backbone" not in provenance:
        return "manifest provenance has neither 'backbone' nor 'torch_reference'"
    if importlib.util.find_spec("zsclip_export") is None:
        return f"zsclip_export is not importable; {INSTALL_HINT}"
    return None


def build_reference_module(manifest: ModelManifest) -> Any:
    """The torch image tower named by the manifest's provenance, in eval mode.

    Raises:
        ConfigError: no usable hook, or the hook names something that does not exist.
    """
    provenance: Mapping[str, Any] = manifest.provenance
    if "torch_reference" in provenance:
        module_name, _, func_name = str(provenance["torch_reference"]).partition(":")
        try:
            builder = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"torch_reference {provenance['torch_reference']!r}: {exc}") from None
        return builder(manifest).eval()
    if "backbone" not in provenance:
        raise ConfigError("manifest provenance has neither 'backbone' nor 'torch_reference'; no torch baseline")
    from zsclip_export.image_tower import ConceptImageTower, load_backbone

    backbone, _ = load_backbone(str(provenance["backbone"]))
    return ConceptImageTower(backbone, float(provenance.get("temperature", 1.0))).eval()


def build_torch_encoder(manifest: ModelManifest, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """pixels -> normalised image embeddings, by the torch reference on `threads` threads.

    Raises:
        ConfigError: no usable hook, or the module's output width is not the manifest's embedding dim.
    """
    import torch

    torch.set_num_threads(threads)
    module = build_reference_module(manifest)
    dim, norm = manifest.embedding.dim, manifest.embedding.norm

    def encode(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))).float().numpy()
        if out.shape[-1] != dim:
            raise ConfigError(f"torch reference gives {out.shape[-1]}-d embeddings, the manifest says {dim}")
        return normalize_rows(out, norm)

    return encode

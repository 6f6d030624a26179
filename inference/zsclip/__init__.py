"""zsclip: zero-shot image classification with Russian class names on a lean ONNX Runtime.

The runtime depends on onnxruntime, numpy, pillow, tokenizers and click only.
"""

from __future__ import annotations

__version__ = "0.1.0"

from zsclip.errors import ConfigError, InputDataError, ModelDirError, ProviderError, ZsclipError

__all__ = ["ConfigError", "InputDataError", "ModelDirError", "ProviderError", "ZsclipError", "__version__"]

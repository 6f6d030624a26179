"""Import `open_clip` (pip `open_clip_torch`) for model construction only, without a working torchvision.

Why a shim: `open_clip` imports torchvision at package import (`open_clip.utils` for `FrozenBatchNorm2d`,
`open_clip.transform` for its image transforms). The torchvision wheels on PyPI that match torch 2.13.0 are
CUDA builds: their `_C.so` links `libtorch_cuda.so`/`libc10_cuda.so`, which the CPU build of torch does not have,
so `import torchvision` fails with "RuntimeError: operator torchvision::nms does not exist" (and without
torchvision: ModuleNotFoundError). The exporter needs neither: it builds the model from `open_clip_config.json`,
loads the weights strictly and exports `encode_image` / `encode_text`; preprocessing comes from the config's
`preprocess_cfg` and the runtime. So, only when the real torchvision does not import, `import_open_clip` puts
a stand-in `torchvision` into `sys.modules` for the duration of the import: every name it provides is a
placeholder that raises `ConfigError` when used (open_clip's transforms, and `FrozenBatchNorm2d`, which
open_clip only uses to freeze ResNet towers for training). The stand-in is removed again after the import,
so nothing else in the process sees it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from typing import Any

from zsclip.errors import ConfigError

OPEN_CLIP_PIP = "pip install --no-deps open_clip_torch==3.3.0 (plus ftfy, regex; torchvision and timm are not needed)"
STUB_MODULES = ("torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.transforms",
                "torchvision.transforms.functional")


class PlaceholderType(type):
    """Class attributes (e.g. `InterpolationMode.BICUBIC` in default arguments) are inert names."""

    def __getattr__(cls, attr: str) -> str:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return f"{cls.__name__}.{attr}"


def placeholder(name: str) -> type:
    """A class standing for torchvision's `name`: creating or calling it raises ConfigError."""

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise ConfigError(f"torchvision's {name} is not available at export time (zsclip_export.open_clip_import)")

    return PlaceholderType(name, (), {"__init__": refuse})


def stub_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def attribute(attr: str) -> type:
        if attr.startswith("_"):  # __file__, __spec__, ...: tools probing a module must see a plain module
            raise AttributeError(attr)
        return placeholder(f"{name}.{attr}")

    module.__getattr__ = attribute  # type: ignore[method-assign]
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = []  # a package, so submodule imports resolve through sys.modules
    return module


def real_torchvision_imports() -> bool:
    try:
        importlib.import_module("torchvision")
        return True
    except Exception:  # ModuleNotFoundError, or RuntimeError from a CUDA wheel beside a CPU torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False


def import_open_clip() -> types.ModuleType:
    """The `open_clip` package, importable for model construction even where torchvision does not import.

    Raises:
        ConfigError: open_clip_torch (or its ftfy / regex) is not installed.
    """
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    importlib.import_module("transformers")  # first, so its package probes never see the stand-in
    stubbed = not real_torchvision_imports()
    if stubbed:
        for name in STUB_MODULES:
            sys.modules[name] = stub_module(name)
    try:
        return importlib.import_module("open_clip")
    except ImportError as exc:
        raise ConfigError(f"the open_clip family needs open_clip_torch ({exc.name} missing): {OPEN_CLIP_PIP}") from None
    finally:
        if stubbed:
            for name in STUB_MODULES:
                sys.modules.pop(name, None)

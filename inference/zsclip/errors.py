"""Typed errors of zsclip. The CLIs turn any `ZsclipError` into one stderr line and exit code 1."""

from __future__ import annotations


class ZsclipError(Exception):
    """Base class of every error a user can cause and fix."""


class ModelDirError(ZsclipError):
    """The model directory is missing, incomplete, corrupt or of an unknown format."""


class InputDataError(ZsclipError):
    """A data dir, `classes.json`, image or output path is unusable."""


class ProviderError(ZsclipError):
    """An onnxruntime execution provider was requested but is not available."""


class ConfigError(ZsclipError):
    """A configuration value is out of range or inconsistent."""

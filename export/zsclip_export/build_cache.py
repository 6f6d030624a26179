"""The default build's reusable products (vocabulary with inflected forms, glossary, trained text head), cached by
content hash.

Building the vocabulary (pymorphy3 over every navec word) and the glossary (the whole Wiktionary database) costs
about 40 CPU seconds and gives the same bytes every time for the same inputs, so a build stores them under
`cache_dir()` — `$ZSCLIP_CACHE_DIR`, else `$XDG_CACHE_HOME/zsclip/build`, else `~/.cache/zsclip/build` — named by
the sha256 of everything they are computed from: the input files' bytes (navec archive, Wiktionary database),
the config, the versions of the packages involved (wordfreq, pymorphy3 and its dictionaries) and the source of
the modules that compute them. A hit is byte-identical to a fresh computation (tested); any change of input or
code is a miss. Deleting the folder is always safe. `ZSCLIP_CACHE_DIR=off` disables the cache.

The text head's alignment fit (the build's longest step, ~10 CPU minutes) is keyed the same way (`head_key`: its
inputs, config, code and torch version); the head it gives for the default inputs also ships in the package
(`data/text_head-KEY.npz`, 8 MB: the head only, not a model), made by `python -m zsclip_export.text_head_data`,
and a slow test re-runs that fit and compares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional

import numpy as np
from zsclip.manifest import sha256_of

logger = logging.getLogger(__name__)
CACHE_ENV = "ZSCLIP_CACHE_DIR"
VOCAB_ARRAYS = ("token_row", "token_weight", "token_is_piece", "token_length", "vectors")


def cache_dir() -> Optional[Path]:
    """Where build products are cached, or None when `$ZSCLIP_CACHE_DIR` is `off`."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return None if env == "off" else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zsclip" / "build"


def versions(*packages: str) -> Dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def source_sha(*modules: Any) -> str:
    """sha256 of the code of `modules`: their syntax trees without docstrings (comments are not in the tree), so a
    code change is a cache miss and an edit of the documentation is not."""
    import ast

    digest = hashlib.sha256()
    for module in modules:
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()


def content_key(kind: str, parts: Dict[str, Any]) -> str:
    blob = json.dumps({"kind": kind, **parts}, sort_keys=True, ensure_ascii=False, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def cached_bytes(kind: str, parts: Dict[str, Any], compute: Callable[[], bytes], folder: Optional[Path]) -> bytes:
    """`compute()`'s bytes, read from `folder` when an earlier build stored them under the same key."""
    if folder is None:
        return compute()
    path = folder / (content_key(kind, parts) + ".bin")
    if path.is_file():
        logger.info("cache hit: %s", path)
        return path.read_bytes()
    data = compute()
    try:
        write_atomic(path, lambda handle: handle.write(data))
    except OSError as exc:  # a read-only cache only costs time
        logger.warning("could not cache %s: %s", path, exc)
    return data


def vocabulary_parts(navec_path: Path, cfg: Any) -> Dict[str, Any]:
    from zsclip_train import morph, vocab

    return {"navec_sha256": sha256_of(navec_path), "config": dataclasses.asdict(cfg),
            "packages": versions("wordfreq", "pymorphy3", "pymorphy3-dicts-ru", "numpy", "navec"),
            "source": source_sha(vocab, morph)}


def cached_vocabulary(navec_path: Path, cfg: Any, folder: Optional[Path], parts: Optional[Dict[str, Any]] = None) -> tuple:
    """(Vocabulary, navec codebook) for `cfg`, from the cache or built from the navec archive at `navec_path`
    (`parts`: `vocabulary_parts(navec_path, cfg)` when the caller has them)."""
    from zsclip_train.vocab import Vocabulary, build_vocabulary, load_navec

    def compute() -> bytes:
        navec = load_navec(navec_path)
        built = build_vocabulary(navec.vectors, cfg)
        return vocabulary_to_bytes(built, navec.codebook)

    data = cached_bytes("vocabulary", parts or vocabulary_parts(navec_path, cfg), compute, folder)
    import io

    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        tokens = bytes(arrays["tokens"]).decode("utf-8").split("\n")
        vocabulary = Vocabulary(tokens, *(arrays[name] for name in VOCAB_ARRAYS))
        return vocabulary, arrays["codebook"]


def vocabulary_to_bytes(vocab: Any, codebook: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    tokens = np.frombuffer("\n".join(vocab.tokens).encode("utf-8"), dtype=np.uint8)
    np.savez(buffer, tokens=tokens, codebook=np.asarray(codebook, np.float32),
             **{name: getattr(vocab, name) for name in VOCAB_ARRAYS})
    return buffer.getvalue()


def cached_glossary(exclude: Iterable[str], cfg: Any, folder: Optional[Path]) -> bytes:
    """glossary.json's bytes (see `zsclip_train.glossary`), from the cache or built from the Wiktionary database."""
    import zsclip.glossary
    from zsclip_train import glossary

    names = sorted(set(exclude))
    database = glossary.wiki_wordnet_db()

    def compute() -> bytes:
        built = glossary.build_glossary(names, cfg, database)
        return json.dumps(built, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")

    parts = {"database_sha256": sha256_of(database), "config": dataclasses.asdict(cfg),
             "exclude_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
             "source": source_sha(glossary, zsclip.glossary)}
    return cached_bytes("glossary", parts, compute, folder)


HEAD_PARAMETERS = ("mlp.0.weight", "mlp.0.bias", "mlp.3.weight", "mlp.3.bias", "skip.weight", "log_scale")


def shipped_heads_dir() -> Path:
    """The repo's trained text heads (`text_head-KEY.npz`), the alignment fit's output for the default inputs."""
    return Path(__file__).parent / "data"


def head_key(vocabulary_parts: Dict[str, Any], prototypes: np.ndarray, label_table: Path, align_cfg: Any) -> str:
    """Content key of the alignment fit's output: everything the final fit reads, and the code and torch it runs on."""
    import torch
    from zsclip_train import align, labels, morph, text_tower

    parts = {"vocabulary": content_key("vocabulary", vocabulary_parts),
             "prototypes_sha256": hashlib.sha256(np.ascontiguousarray(prototypes, np.float32).tobytes()).hexdigest(),
             "label_table_sha256": sha256_of(label_table), "config": dataclasses.asdict(align_cfg),
             "torch": torch.__version__, "source": source_sha(align, labels, morph, text_tower)}
    return content_key("text_head", parts)


def find_head(key: str, folder: Optional[Path]) -> Optional[Path]:
    """The stored fit output for `key`: shipped with the package, else in the build cache, else None."""
    for base in (shipped_heads_dir(), folder):
        if base is not None and (base / f"{key}.npz").is_file():
            return base / f"{key}.npz"
    return None


def head_to_bytes(tower: Any, final_loss: float, n_phrases: int) -> bytes:
    import io

    state = tower.state_dict()
    buffer = io.BytesIO()
    np.savez(buffer, final_loss=np.float64(final_loss), n_phrases=np.int64(n_phrases),
             **{name: state[name].detach().numpy() for name in HEAD_PARAMETERS})
    return buffer.getvalue()


def load_head(tower: Any, path: Path) -> tuple:
    """Put the stored head into `tower`; returns (final loss, number of phrases) of the fit that made it."""
    import torch

    with np.load(path, allow_pickle=False) as arrays:
        state = {name: torch.from_numpy(arrays[name].copy()) for name in HEAD_PARAMETERS}
        tower.load_state_dict(state, strict=False)
        return float(arrays["final_loss"]), int(arrays["n_phrases"])


def store_head(key: str, data: bytes, folder: Optional[Path]) -> Optional[Path]:
    if folder is None:
        return None
    path = folder / f"{key}.npz"
    try:
        write_atomic(path, lambda handle: handle.write(data))
    except OSError as exc:
        logger.warning("could not cache %s: %s", path, exc)
        return None
    return path

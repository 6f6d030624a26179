"""The text tower's vocabulary: navec word vectors trimmed by frequency, and the matching WordPiece tokenizer.

Out-of-vocabulary strategy (documented in README, tested): the tokenizer is a WordPiece model whose
vocabulary holds whole words, the frequent words again as `##` continuation pieces, and every single
letter/digit at both levels. An unknown word is split greedily into its longest known prefix plus known
continuations ("электрогитара" -> "электро" "##гитара"); leftover single characters carry weight 0, so
the word is represented by the known words inside it. A word with no known piece (or characters outside
the alphabet) becomes [UNK], weight 0. A name made only of weight-0 tokens pools to the zero vector and the
head returns its prior (the runtime warns about such names).

Token weights are SIF weights a / (a + p(word)) (Arora et al., 2017) from `wordfreq`, so function words
("в", "с", "и") barely move the mean.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
from zsclip.errors import ConfigError

logger = logging.getLogger(__name__)

PAD, UNK = "[PAD]", "[UNK]"
PIECE_PREFIX = "##"
ALPHABET = "абвгдежзийклмнопрстуфхцчшщъыьэюяabcdefghijklmnopqrstuvwxyz0123456789"
WORD_PATTERN = re.compile(r"^[a-zа-я0-9]+$")
NAVEC_FILE = "navec_news_v1_1B_250K_300d_100q.tar"


@dataclass(frozen=True)
class VocabConfig:
    """How many navec words to keep (by frequency) and which become continuation pieces."""

    size: int = 100_000
    piece_size: int = 30_000
    min_piece_len: int = 3
    sif_a: float = 1e-4

    def __post_init__(self) -> None:
        if self.size < 1000 or self.piece_size < 0 or self.piece_size > self.size:
            raise ConfigError("vocab size must be >= 1000 and 0 <= piece_size <= size")
        if self.sif_a <= 0:
            raise ConfigError("sif_a must be > 0")


@dataclass(frozen=True)
class Vocabulary:
    """Tokens (index = token id), each token's row in `vectors` and its pooling weight."""

    tokens: List[str]
    token_row: np.ndarray  # int64 [T]
    token_weight: np.ndarray  # float32 [T]
    vectors: np.ndarray  # float32 [W, 300]; row 0 is the zero vector


def normalize_word(word: str) -> str:
    return word.lower().replace("ё", "е")


def find_navec_file() -> Path:
    """The navec archive shipped inside the `natasha` wheel.

    Raises:
        ConfigError: natasha is not installed.
    """
    try:
        import natasha
    except ImportError:
        raise ConfigError("navec vectors come with natasha: pip install 'zsclip[export]'") from None
    path = Path(natasha.__file__).parent / "data" / "emb" / NAVEC_FILE
    if not path.is_file():
        raise ConfigError(f"{path} missing: reinstall natasha")
    return path


def load_navec_vectors(path: Optional[Path] = None) -> Dict[str, np.ndarray]:
    """Normalised word -> 300-d float32 vector, decoded from navec's product quantisation at once.

    Where a word exists with and without `ё`, the `е` spelling's vector wins.
    """
    from navec import Navec

    navec = Navec.load(str(path or find_navec_file()))
    pq = navec.pq
    vectors = pq.codes[np.arange(pq.qdim)[None, :], pq.indexes].reshape(len(navec.vocab.words), -1)
    table: Dict[str, np.ndarray] = {}
    for word, vector in zip(navec.vocab.words, vectors.astype(np.float32)):
        key = normalize_word(word)
        if not WORD_PATTERN.match(key):
            continue
        if key not in table or word == key:
            table[key] = vector
    return table


def build_vocabulary(
    vectors: Dict[str, np.ndarray], cfg: VocabConfig, must_have: Iterable[str] = ()
) -> Vocabulary:
    """Keep the `cfg.size` most frequent words (plus every known word of `must_have`), add pieces and letters."""
    from wordfreq import get_frequency_dict

    freq = get_frequency_dict("ru")
    ranked = sorted(vectors, key=lambda w: (-freq.get(w, 0.0), w))
    kept = ranked[: cfg.size]
    extra = sorted({w for w in must_have if w in vectors} - set(kept))
    kept = kept + extra
    words = [""] + kept  # row 0: zero vector
    matrix = np.zeros((len(words), next(iter(vectors.values())).shape[0]), dtype=np.float32)
    for row, word in enumerate(words[1:], start=1):
        matrix[row] = vectors[word]
    row_of = {w: i for i, w in enumerate(words) if w}

    def sif(word: str) -> float:
        return cfg.sif_a / (cfg.sif_a + freq.get(word, 0.0))

    tokens, rows, weights = [PAD, UNK], [0, 0], [0.0, 0.0]
    for word in kept:
        tokens.append(word)
        rows.append(row_of[word])
        weights.append(sif(word))
    pieces = [w for w in ranked[: cfg.piece_size] if len(w) >= cfg.min_piece_len]
    for word in pieces:
        tokens.append(PIECE_PREFIX + word)
        rows.append(row_of[word])
        weights.append(sif(word))
    present = set(tokens)
    for char in ALPHABET:
        for token in (char, PIECE_PREFIX + char):
            if token not in present:
                tokens.append(token)
                rows.append(0)
                weights.append(0.0)
    logger.info("vocabulary: %d words, %d pieces, %d tokens", len(kept), len(pieces), len(tokens))
    return Vocabulary(tokens, np.asarray(rows, np.int64), np.asarray(weights, np.float32), matrix)


def build_tokenizer(vocab: Vocabulary):  # -> tokenizers.Tokenizer
    """WordPiece over `vocab.tokens` with the normaliser the runtime relies on (NFKC, lowercase, ё->е)."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    model = WordPiece(
        {token: i for i, token in enumerate(vocab.tokens)},
        unk_token=UNK,
        continuing_subword_prefix=PIECE_PREFIX,
        max_input_chars_per_word=40,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace("ё", "е")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\W_]+"), behavior="removed")
    return tokenizer

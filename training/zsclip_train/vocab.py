"""The text tower's vocabulary: navec word vectors trimmed by frequency, and the matching WordPiece tokenizer.

Out-of-vocabulary strategy (documented in export/README-default-model.md, tested): every navec word (about 241K after
normalisation; `VocabConfig.size` keeps only the most frequent) is a token. Stored as navec's own 8-bit
product-quantisation codes (`NavecTextTower.product_quantized_storage`), the whole table costs 24 MB, less
than the 100K words kept as float16 before; the full table was chosen on three proxies (held-out whole
label-table rows: sibling top-1 0.263 -> 0.289; Tux Paint photo stamps, 241 real photos in 13 fine-grained
sets: 0.405 -> 0.437; held-out synonyms top-1 0.635 -> 0.638, but their plurals 0.643 -> 0.633).

The tokenizer is a WordPiece model whose vocabulary also holds the frequent words again as `##`
continuation pieces and every single letter/digit at both levels. An unknown word is split greedily
into its longest known prefix plus continuations ("электрогитара" -> "электро" "##гитара"); single
letters weigh 0. (An option of the text tower, `split_piece_min_len`, also
ignores short pieces of split words; measured on held-out label-table synonyms it lost 8 points of
top-1, so it is off by default.) A word with characters outside the alphabet becomes [UNK] and weighs 0;
a name made only of such words pools to the zero vector and the head returns its prior
(the runtime warns about names with no known token).

Inflected forms (`inflections`, needs pymorphy3 at build time only): a Russian class name is often not in the
nominative singular («морда пумы», «пумы»), and forms navec lacks would fall to WordPiece, which
chops them into meaningless pieces («пумы» -> «пу» «##м» «##ы»). So every navec word
outside the vocabulary whose lemma is inside it, and every nominative/genitive, singular/plural form of each
vocabulary noun and adjective, is a token of its own that shares its lemma's vector row and weight (no
extra vectors; the tokenizer grows).

Token weights are SIF weights a / (a + p(word)) (Arora et al., 2017) from `wordfreq`, so function words
("в", "с", "и") barely move the mean.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

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
    """Which navec words become tokens, and which word pieces serve unknown words.

    The `size` most frequent navec words (by `wordfreq`) are tokens with their own vector; the
    `piece_size` most frequent of those with >= `min_piece_len` letters are also `##` pieces.
    """

    size: int = 250_000  # more than navec's 241K usable words: all of them
    piece_size: int = 30_000
    min_piece_len: int = 3
    sif_a: float = 1e-4
    inflections: bool = True  # inflected forms share their lemma's row (pymorphy3 at build time)

    def __post_init__(self) -> None:
        if self.size < 100 or not 0 <= self.piece_size <= self.size or self.min_piece_len < 1:
            raise ConfigError("vocab size must be >= 100, 0 <= piece_size <= size and min_piece_len >= 1")
        if self.sif_a <= 0:
            raise ConfigError("sif_a must be > 0")


@dataclass(frozen=True)
class Vocabulary:
    """Tokens (index = token id), each token's row in `vectors`, its pooling weight and piece facts."""

    tokens: List[str]
    token_row: np.ndarray  # int64 [T]
    token_weight: np.ndarray  # float32 [T]
    token_is_piece: np.ndarray  # float32 [T]: 1 for "##" continuation pieces
    token_length: np.ndarray  # int64 [T]: characters, without the "##" prefix
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


@dataclass(frozen=True)
class NavecTable:
    """navec, read once: normalised word -> 300-d float32 vector, and the product-quantisation codebook
    (float32 [groups, 256, dims per group]) every one of those vectors is a concatenation of codewords from."""

    vectors: Dict[str, np.ndarray]
    codebook: np.ndarray


def load_navec(path: Optional[Path] = None) -> NavecTable:
    """The navec archive's words, decoded from its product quantisation at once, and its codebook.

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
    return NavecTable(table, np.asarray(pq.codes, dtype=np.float32))


def build_vocabulary(vectors: Dict[str, np.ndarray], cfg: VocabConfig) -> Vocabulary:
    """The `cfg.size` most frequent navec words as tokens, then `##` pieces and single letters/digits."""
    from wordfreq import get_frequency_dict

    freq = get_frequency_dict("ru")
    ranked = sorted(vectors, key=lambda w: (-freq.get(w, 0.0), w))[: cfg.size]
    word_row = {word: row for row, word in enumerate(ranked, start=1)}  # row 0: zero vector
    matrix = np.stack([np.zeros_like(vectors[ranked[0]])] + [vectors[w] for w in ranked])

    def sif(word: str) -> float:
        return cfg.sif_a / (cfg.sif_a + freq.get(word, 0.0))

    tokens, rows, weights = [PAD, UNK], [0, 0], [0.0, 0.0]
    for word in ranked:
        tokens.append(word)
        rows.append(word_row[word])
        weights.append(sif(word))
    if cfg.inflections:
        extra = sorted(set(vectors) - set(word_row))
        for form, lemma in sorted(inflected_forms(ranked, extra).items()):
            tokens.append(form)
            rows.append(word_row[lemma])
            weights.append(sif(lemma))
    pieces = [w for w in ranked[: cfg.piece_size] if len(w) >= cfg.min_piece_len]
    for word in pieces:
        tokens.append(PIECE_PREFIX + word)
        rows.append(word_row[word])
        weights.append(sif(word))
    present = set(tokens)
    for char in ALPHABET:
        for token in (char, PIECE_PREFIX + char):
            if token not in present:
                tokens.append(token)
                rows.append(0)
                weights.append(0.0)
    is_piece = np.array([t.startswith(PIECE_PREFIX) for t in tokens], dtype=np.float32)
    length = np.array([len(t) - (len(PIECE_PREFIX) if t.startswith(PIECE_PREFIX) else 0) for t in tokens], np.int64)
    length[:2] = 0
    logger.info("vocabulary: %d tokens, %d vector rows, %d pieces", len(tokens), len(matrix), len(pieces))
    return Vocabulary(
        tokens, np.asarray(rows, np.int64), np.asarray(weights, np.float32), is_piece, length, matrix.astype(np.float32)
    )


INFLECTED_CASES = frozenset({"nomn", "gent"})
INFLECTED_POS = frozenset({"NOUN", "ADJF"})


def inflected_forms(vocabulary: List[str], outside: List[str]) -> Dict[str, str]:
    """Form -> vocabulary lemma, for forms that are not vocabulary words themselves: the `outside` words
    whose most likely lemma is in `vocabulary`, and the nominative/genitive forms (both numbers) of each
    vocabulary noun or adjective that is its own lemma.

    Raises:
        ConfigError: pymorphy3 is missing.
    """
    from zsclip_train.morph import analyzer

    morph = analyzer()
    known = set(vocabulary)
    forms: Dict[str, str] = {}
    for word in outside:
        lemma = normalize_word(morph.parse(word)[0].normal_form)
        if lemma in known and lemma != word:
            forms[word] = lemma
    for word in vocabulary:
        parse = morph.parse(word)[0]
        if parse.tag.POS not in INFLECTED_POS or normalize_word(parse.normal_form) != word:
            continue
        for form in parse.lexeme:
            text = normalize_word(form.word)
            if form.tag.case in INFLECTED_CASES and text not in known and WORD_PATTERN.match(text):
                forms.setdefault(text, word)
    return forms


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

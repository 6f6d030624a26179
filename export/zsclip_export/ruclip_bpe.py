"""YouTokenToMe `bpe.model` -> a `tokenizers` tokenizer that tokenizes exactly like ruCLIP.

The bpe.model file (YouTokenToMe 1.0.x, `BPEState::dump`) is plain text::

    n_chars n_rules
    codepoint id         (n_chars lines)
    x y z                (n_rules lines: tokens x and y merge into z; earlier lines merge first)
    unk pad bos eos      (special ids)

YouTokenToMe splits text at ASCII whitespace (and U+2581), prefixes every word with U+2581, maps each
run of unknown characters to one <UNK>, then applies the merges by rule order, leftmost first. That is a
`tokenizers` BPE with merges in rule order and `fuse_unk`. ruCLIP lowercases before encoding and adds
<BOS> ... <EOS>, truncating the words to context_length - 2.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

from zsclip.errors import ConfigError

SPACE = "\u2581"
SPECIAL_NAMES = ("<PAD>", "<UNK>", "<BOS>", "<EOS>")
YTTM_SPACES = "\t\n\x0b\x0c\r " + SPACE  # C isspace() below 256, plus U+2581


@dataclass(frozen=True)
class YttmModel:
    char_ids: Dict[str, int]  # character -> id
    rules: Tuple[Tuple[int, int, int], ...]  # (x, y, z) in merge order
    unk_id: int
    pad_id: int
    bos_id: int
    eos_id: int

    def pieces(self) -> Dict[int, str]:
        """id -> the string a token stands for (special tokens by their YouTokenToMe names)."""
        names = {i: c for c, i in self.char_ids.items()}
        for x, y, z in self.rules:
            names[z] = names[x] + names[y]
        for name, special in zip(SPECIAL_NAMES, (self.pad_id, self.unk_id, self.bos_id, self.eos_id)):
            names[special] = name
        return names


def read_yttm_model(path: Path) -> YttmModel:
    """Parse a YouTokenToMe bpe.model.

    Raises:
        ConfigError: unreadable or malformed file.
    """
    try:
        numbers = [int(v) for v in Path(path).read_text(encoding="ascii").split()]
        n_chars, n_rules = numbers[0], numbers[1]
        body = numbers[2:]
        chars = {chr(body[2 * i]): body[2 * i + 1] for i in range(n_chars)}
        start = 2 * n_chars
        rules = tuple(tuple(body[start + 3 * i : start + 3 * i + 3]) for i in range(n_rules))
        unk, pad, bos, eos = body[start + 3 * n_rules : start + 3 * n_rules + 4]
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: not a YouTokenToMe bpe.model ({type(exc).__name__}: {exc})") from None
    if SPACE not in chars:
        raise ConfigError(f"{path}: the model has no U+2581 word-start character; not a YouTokenToMe BPE model")
    return YttmModel(chars, rules, unk, pad, bos, eos)  # type: ignore[arg-type]


def tokenizer_of(bpe: YttmModel) -> Any:
    """The bare YouTokenToMe encoder as a `tokenizers.Tokenizer` (no lowercasing, no BOS/EOS).

    Raises:
        ConfigError: two token ids stand for the same string (a `tokenizers` vocab cannot hold that).
    """
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    names = bpe.pieces()
    vocab: Dict[str, int] = {}
    for token_id, piece in sorted(names.items()):
        if piece in vocab:
            raise ConfigError(f"bpe.model: ids {vocab[piece]} and {token_id} both spell {piece!r}; cannot convert exactly")
        vocab[piece] = token_id
    merges = [(names[x], names[y]) for x, y, _ in bpe.rules]
    model = BPE(vocab=vocab, merges=merges, unk_token=names[bpe.unk_id], fuse_unk=True)
    tokenizer = Tokenizer(model)
    spaces = "".join(f"\\x{ord(c):02x}" if ord(c) < 128 else c for c in YTTM_SPACES)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(f"[{spaces}]+"), behavior="removed"),
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always", split=False),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always", split=False)
    return tokenizer


def ruclip_tokenizer(bpe: YttmModel, context_length: int) -> Any:
    """RuCLIPProcessor's text encoding: lowercase, YouTokenToMe BPE, <BOS> ... <EOS>, at most context_length ids."""
    from tokenizers import normalizers, processors

    tokenizer = tokenizer_of(bpe)
    tokenizer.normalizer = normalizers.Lowercase()
    bos, eos = SPECIAL_NAMES[2], SPECIAL_NAMES[3]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, bpe.bos_id), (eos, bpe.eos_id)])
    tokenizer.enable_truncation(max_length=context_length)
    tokenizer.no_padding()
    return tokenizer


def encode_like_yttm(bpe: YttmModel, text: str) -> List[int]:
    """A Python port of YouTokenToMe's `encode_sentence` (ids, no BOS/EOS); the reference when
    youtokentome itself is not installed."""
    rule_rank = {(x, y): (rank, z) for rank, (x, y, z) in enumerate(bpe.rules)}
    out: List[int] = []
    word: List[str] = []
    for ch in text + " ":
        if ch in YTTM_SPACES:
            if word:
                out.extend(_encode_word(bpe, rule_rank, word))
                word = []
        else:
            word.append(ch)
    return out


def _encode_word(bpe: YttmModel, rule_rank: Dict[Tuple[int, int], Tuple[int, int]], word: List[str]) -> List[int]:
    tokens: List[int] = [bpe.char_ids[SPACE]]
    for ch in word:
        known = bpe.char_ids.get(ch)
        if known is not None:
            tokens.append(known)
        elif tokens[-1] != -1:
            tokens.append(-1)  # a run of unknown characters is one <UNK>
    while True:
        heap = [(rule_rank[(a, b)][0], i) for i, (a, b) in enumerate(zip(tokens, tokens[1:])) if (a, b) in rule_rank]
        if not heap:
            break
        _, i = heapq.nsmallest(1, heap)[0]
        tokens[i : i + 2] = [rule_rank[(tokens[i], tokens[i + 1])][1]]
    return [bpe.unk_id if t == -1 else t for t in tokens]

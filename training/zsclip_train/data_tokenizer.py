"""A WordPiece tokenizer trained on the cleaned queries, with the runtime's normaliser (NFKC, lowercase, ё->е)."""

from __future__ import annotations

from pathlib import Path

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1


def train_tokenizer(queries_txt: Path, vocab_size: int):  # -> tokenizers.Tokenizer
    """Train on `queries.txt` (one image per line, queries joined by TAB); [PAD] = 0, [UNK] = 1."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer

    tokenizer = Tokenizer(WordPiece(unk_token=UNK, max_input_chars_per_word=40))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace("ё", "е")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\W_]+"), behavior="removed")
    trainer = WordPieceTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[PAD, UNK],
                               show_progress=False)
    tokenizer.train([str(queries_txt)], trainer)
    return tokenizer

import numpy as np
import pytest

pytest.importorskip("wordfreq")

from zsclip_train.vocab import VocabConfig, build_tokenizer, build_vocabulary  # noqa: E402

WORDS = ["кот", "собака", "гитара", "электро", "самолет", "и", "в", "красный"]


@pytest.fixture(scope="module")
def vocab():
    rng = np.random.default_rng(0)
    vectors = {w: rng.normal(size=8).astype(np.float32) for w in WORDS}
    return build_vocabulary(vectors, VocabConfig(size=100, piece_size=100, min_piece_len=3))


def test_normaliser_lowercases_maps_yo_and_strips_punctuation(vocab):
    tokenizer = build_tokenizer(vocab)
    assert tokenizer.encode("Самолёт!").tokens == ["самолет"]
    assert tokenizer.encode("КОТ, и  собака...").tokens == ["кот", "и", "собака"]


def test_oov_compound_splits_into_known_pieces(vocab):
    tokenizer = build_tokenizer(vocab)
    assert tokenizer.encode("Электрогитара").tokens == ["электро", "##гитара"]
    # unknown letters-only word: single letters, all weight 0
    ids = tokenizer.encode("щуп").ids
    assert all(vocab.token_weight[i] == 0 for i in ids)
    assert tokenizer.encode("😀").ids == []


def test_sif_weights_shrink_function_words(vocab):
    tokenizer = build_tokenizer(vocab)
    weight = {t: vocab.token_weight[tokenizer.token_to_id(t)] for t in ("и", "гитара")}
    assert weight["и"] < 0.05 < weight["гитара"]


def test_pooling_of_unknown_is_zero_and_compound_uses_pieces(vocab):
    torch = pytest.importorskip("torch")
    from zsclip_train.text_tower import NavecTextTower

    tokenizer = build_tokenizer(vocab)
    tower = NavecTextTower(vocab.vectors, vocab.token_row, vocab.token_weight, np.eye(4, 16, dtype=np.float32),
                           vocab.token_is_piece, vocab.token_length, hidden=8)

    def pool(text, t=tower):
        ids = torch.tensor([tokenizer.encode(text).ids or [0]])
        return t.pool(ids, (ids > 0).long())[0]

    assert float(pool("щуп").abs().sum()) == 0.0
    expected = pool("электро гитара")
    assert torch.allclose(pool("электрогитара"), expected, atol=1e-6)
    strict = NavecTextTower(vocab.vectors, vocab.token_row, vocab.token_weight, np.eye(4, 16, dtype=np.float32),
                            vocab.token_is_piece, vocab.token_length, split_piece_min_len=7, hidden=8)
    assert torch.allclose(pool("электрогитара", strict), pool("электро"), atol=1e-6)

import numpy as np
import pytest

pytest.importorskip("wordfreq")

from zsclip_train.vocab import VocabConfig, build_tokenizer, build_vocabulary, inflected_forms  # noqa: E402

WORDS = ["кот", "собака", "гитара", "электро", "самолет", "и", "в", "красный"]


@pytest.fixture(scope="module")
def vocab():
    rng = np.random.default_rng(0)
    vectors = {w: rng.normal(size=8).astype(np.float32) for w in WORDS}
    return build_vocabulary(vectors, VocabConfig(size=100, piece_size=100, min_piece_len=3, inflections=False))


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


def test_inflected_forms_map_onto_their_vocabulary_lemma():
    pytest.importorskip("pymorphy3")
    forms = inflected_forms(["пума", "морда", "красный", "и"], ["пумой", "столом"])
    assert forms["пумы"] == forms["пум"] == "пума"  # genitive singular / nominative plural, genitive plural
    assert forms["морды"] == "морда" and forms["красные"] == forms["красного"] == "красный"
    assert forms["пумой"] == "пума"  # an outside word whose lemma is in the vocabulary
    assert "пуме" not in forms  # dative: not a form names come in
    assert "столом" not in forms  # its lemma is not in the vocabulary


def test_an_inflected_name_pools_to_its_lemma_vector():
    pytest.importorskip("pymorphy3")
    rng = np.random.default_rng(1)
    vectors = {w: rng.normal(size=8).astype(np.float32) for w in ["пума", "морда", "кот"]}
    vocab = build_vocabulary(vectors, VocabConfig(size=100, piece_size=100, min_piece_len=3))
    tokenizer = build_tokenizer(vocab)
    ids = tokenizer.encode("Морды пумы").ids
    assert [vocab.tokens[i] for i in ids] == ["морды", "пумы"]
    assert vocab.token_row[ids[1]] == vocab.token_row[tokenizer.token_to_id("пума")]
    assert vocab.token_weight[ids[1]] == vocab.token_weight[tokenizer.token_to_id("пума")]
    without = build_vocabulary(vectors, VocabConfig(size=100, piece_size=100, min_piece_len=3, inflections=False))
    assert build_tokenizer(without).token_to_id("пумы") is None

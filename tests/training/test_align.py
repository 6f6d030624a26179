import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zsclip_train.align import AlignConfig, align_text_tower, concept_distribution  # noqa: E402
from zsclip_train.labels import LabelRow, Phrase, augment_phrases, build_phrases, load_label_table  # noqa: E402
from zsclip_train.text_tower import NavecTextTower  # noqa: E402


class FakeEncoding:
    def __init__(self, ids):
        self.ids = ids


class WordTokenizer:
    """One id per known word (1-based), enough for the alignment loop."""

    def __init__(self, words):
        self.index = {w: i + 1 for i, w in enumerate(words)}

    def encode_batch(self, texts):
        return [FakeEncoding([self.index[w] for w in t.split() if w in self.index]) for t in texts]


def test_label_table_is_complete_and_ordered():
    rows = load_label_table()
    assert len(rows) == 1000 and [r.index for r in rows] == list(range(1000))
    assert all(r.names for r in rows) and all(r.wnid.startswith("n") for r in rows)


def test_hypernym_covers_its_descendants():
    rows = [LabelRow(0, "n0", ("кот",), ("животное",)), LabelRow(1, "n1", ("пес", "собака"), ("животное",))]
    phrases = {p.text: p for p in build_phrases(rows, holdout={(1, "собака")})}
    assert phrases["животное"].classes == (0, 1) and not phrases["животное"].is_name
    assert phrases["пес"].classes == (1,) and "собака" not in phrases


def test_alignment_maps_names_onto_their_prototypes_and_hypernyms_between():
    rng = np.random.default_rng(0)
    words = ["кот", "пес", "рыба", "животное"]
    vectors = np.vstack([np.zeros(16), rng.normal(size=(4, 16))]).astype(np.float32)
    prototypes = rng.normal(size=(3, 32)).astype(np.float32)
    rows = [LabelRow(0, "n0", ("кот",), ("животное",)), LabelRow(1, "n1", ("пес",), ("животное",)),
            LabelRow(2, "n2", ("рыба",), ())]
    tower = NavecTextTower(vectors, np.arange(5), np.ones(5, np.float32), prototypes, hidden=32)
    tokenizer = WordTokenizer(words)
    report = align_text_tower(tower, tokenizer, rows, AlignConfig(epochs=200, input_noise=0.0, plural_augment=False),
                              validate=False)
    q = concept_distribution(tower, tokenizer, words, 4)
    assert q[:3].argmax(dim=1).tolist() == [0, 1, 2]
    assert float(q[3, 0] + q[3, 1]) > 0.9  # "животное" spreads over its two descendants
    assert report.final_loss < 1.5


def test_augmented_forms_share_targets_and_never_override_a_phrase():
    phrases = [Phrase("кот", (0,), True), Phrase("коты", (5,), True), Phrase("пес", (1,), True),
               Phrase("собака", (1, 2), False)]
    forms = {"кот": "коты", "пес": "псы", "собака": "собаки"}
    out = {p.text: p for p in augment_phrases(phrases, forms.get)}
    assert out["коты"].classes == (5,)  # an existing phrase keeps its own target
    assert out["псы"] == Phrase("псы", (1,), True) and out["собаки"] == Phrase("собаки", (1, 2), False)
    assert augment_phrases(phrases, None) == phrases


def test_plural_phrase_inflects_head_noun_and_its_adjectives_only():
    pytest.importorskip("pymorphy3")
    from zsclip_train.morph import plural_phrase

    assert plural_phrase("большая белая акула") == "большие белые акулы"
    assert plural_phrase("бочка для дождевой воды") == "бочки для дождевой воды"
    assert plural_phrase("акула-людоед") == "акулы-людоеды"
    assert plural_phrase("самолет") == "самолеты" and plural_phrase("еж") == "ежи"
    assert plural_phrase("ножницы") is None  # plural-only noun: nothing to add


def test_alignment_with_plural_augmentation_maps_plurals_too():
    pytest.importorskip("pymorphy3")
    rng = np.random.default_rng(0)
    words = ["кот", "пес", "рыба", "коты", "псы", "рыбы"]
    vectors = np.vstack([np.zeros(16), rng.normal(size=(6, 16))]).astype(np.float32)
    prototypes = rng.normal(size=(3, 32)).astype(np.float32)
    rows = [LabelRow(0, "n0", ("кот",), ()), LabelRow(1, "n1", ("пес",), ()), LabelRow(2, "n2", ("рыба",), ())]
    tower = NavecTextTower(vectors, np.arange(7), np.ones(7, np.float32), prototypes, hidden=32)
    tokenizer = WordTokenizer(words)
    report = align_text_tower(tower, tokenizer, rows, AlignConfig(epochs=200, input_noise=0.0), validate=False)
    assert report.n_phrases == 6
    q = concept_distribution(tower, tokenizer, words[3:], 4)
    assert q.argmax(dim=1).tolist() == [0, 1, 2]


def test_definitions_cover_their_class_only_and_are_never_inflected():
    rows = [LabelRow(0, "n0", ("кот",), ("животное",), "домашний зверь который мяукает"),
            LabelRow(1, "n1", ("пес",), ("животное",), "")]
    plain = {p.text for p in build_phrases(rows)}
    phrases = {p.text: p for p in build_phrases(rows, definitions=True)}
    assert set(phrases) - plain == {"домашний зверь который мяукает"}
    assert phrases["домашний зверь который мяукает"] == Phrase("домашний зверь который мяукает", (0,), False, True)
    augmented = {p.text for p in augment_phrases(list(phrases.values()), lambda text: text + "ы")}
    assert "коты" in augmented and "домашний зверь который мяукаеты" not in augmented


def test_label_table_reads_an_optional_definition_column(tmp_path):
    with_def = tmp_path / "with.tsv"
    with_def.write_text("index\twnid\tnames_ru\thypernyms_ru\tdefinition_ru\n0\tn0\tкот\tживотное\tЗверь, Ёж\n",
                        encoding="utf-8")
    without = tmp_path / "without.tsv"
    without.write_text("index\twnid\tnames_ru\thypernyms_ru\n0\tn0\tкот\tживотное\n", encoding="utf-8")
    assert load_label_table(with_def)[0].definition == "зверь, еж"
    assert load_label_table(without)[0].definition == ""


def test_alignment_trains_on_definitions_when_asked():
    rng = np.random.default_rng(0)
    words = ["кот", "пес", "рыба", "мяукает", "лает", "плавает"]
    vectors = np.vstack([np.zeros(16), rng.normal(size=(6, 16))]).astype(np.float32)
    prototypes = rng.normal(size=(3, 32)).astype(np.float32)
    rows = [LabelRow(0, "n0", ("кот",), (), "мяукает"), LabelRow(1, "n1", ("пес",), (), "лает"),
            LabelRow(2, "n2", ("рыба",), (), "плавает")]
    tower = NavecTextTower(vectors, np.arange(7), np.ones(7, np.float32), prototypes, hidden=32)
    tokenizer = WordTokenizer(words)
    cfg = AlignConfig(epochs=200, input_noise=0.0, plural_augment=False, definitions=True)
    assert align_text_tower(tower, tokenizer, rows, cfg, validate=False).n_phrases == 6
    q = concept_distribution(tower, tokenizer, words[3:], 4)
    assert q.argmax(dim=1).tolist() == [0, 1, 2]
    off = AlignConfig(epochs=1, plural_augment=False)  # off by default
    assert align_text_tower(tower, tokenizer, rows, off, validate=False).n_phrases == 3

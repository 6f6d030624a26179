"""YouTokenToMe bpe.model -> tokenizers: identical ids to youtokentome (golden ids made with youtokentome 1.0.6).

Needs only `tokenizers` (runtime dep); with youtokentome installed it is also compared live on random text.
"""

import random

import pytest
from zsclip_export.hf_preprocess import RUSSIAN_SENTENCES
from zsclip_export.ruclip_bpe import encode_like_yttm, read_yttm_model, ruclip_tokenizer, tokenizer_of

# youtokentome.BPE.train(vocab_size=70) on a small Russian corpus; the file's whitespace layout does not matter.
GOLDEN_MODEL = (
    "38 28 1076 19 1089 10 1081 18 1073 20 120 34 1086 6 1099 21 112 36 1078 33 1091 15 49 40 1083 16 1096 29 109 38 "
    "1075 24 1088 11 1101 27 114 35 1080 7 1093 30 1072 5 1085 8 111 37 1077 23 1090 12 48 41 1103 26 1082 9 9601 4 "
    "1095 22 1074 17 1087 32 1100 28 1092 31 50 25 1105 14 1084 13 97 39 4 10 42 9 5 43 4 9 44 4 7 45 8 21 46 46 18 "
    "47 11 12 48 4 24 49 6 19 50 5 10 51 4 14 52 13 5 53 4 17 54 6 20 55 8 23 56 4 5 57 8 5 58 57 27 59 4 58 60 59 11 "
    "61 15 58 62 61 6 63 16 62 64 63 32 65 4 64 66 65 6 67 57 17 68 67 48 69 1 0 2 3"
)
GOLDEN_IDS = [
    [4, 31, 6, 12, 6, 24, 11, 5, 31, 7, 26, 44, 6, 29, 9, 7, 60, 4, 19, 7, 17, 5, 56],
    [52, 33, 7, 9, 54, 4, 12, 15, 53, 56, 45, 52, 16, 43],
    [4, 22, 14, 11, 47, 68, 12, 6, 13, 55, 7, 16, 28, 4, 1, 38, 1, 4, 34, 1, 4, 25, 41, 25, 40, 49, 50, 5],
    [42, 55, 5, 43, 4, 32, 6, 11, 50, 21, 4, 30, 51, 9, 7, 1, 4, 1, 4, 13, 23, 10, 26, 1, 5, 1],
    [44, 11, 51, 47, 4, 13, 26, 22, 45, 42, 7, 8, 7, 18, 44, 15, 20],
    [4, 8, 6, 22, 8, 6, 18, 49, 6, 11, 50, 4, 1, 45, 66, 4, 1],
    [4, 1, 36, 1, 37, 1, 4, 40, 1, 4, 36, 35, 37, 4, 38, 39, 34, 4, 1, 42, 53, 48, 31, 6, 8],
    [4, 13, 6, 11, 6, 33, 23, 8, 6, 23, 1, 4, 32, 16, 6, 13, 20, 7, 11, 4, 1, 17, 5, 8, 7, 16, 28, 8, 6, 23, 1, 4, 40, 41, 41, 49],
    [4, 32, 12, 7, 1, 5, 60, 54, 23, 12, 9, 23],
    [42, 5, 13, 6, 16, 14, 12, 4, 12, 15, 1, 40, 1, 54, 69, 15, 4, 29, 23, 11, 23, 13, 23, 12, 28, 23, 17, 6],
    [42, 5, 13, 21, 18, 1, 10, 5, 13, 21, 18, 4, 16, 15, 22, 29, 7, 18, 4, 19, 23, 8, 28],
    [52, 16, 6, 22, 46, 23, 45, 24, 11, 15, 29, 9, 7, 45, 49, 7, 11, 16, 26, 8, 19, 5],
    [44, 6, 12],
    [],
]


@pytest.fixture()
def golden(tmp_path):
    path = tmp_path / "bpe.model"
    path.write_text(GOLDEN_MODEL.replace(" ", "\n"), encoding="ascii")
    return path


def test_converted_tokenizer_matches_youtokentome_golden_ids(golden):
    model = read_yttm_model(golden)
    bare = tokenizer_of(model)
    for sentence, expected in zip(RUSSIAN_SENTENCES, GOLDEN_IDS):
        assert bare.encode(sentence.lower()).ids == expected, sentence
        assert encode_like_yttm(model, sentence.lower()) == expected, sentence


def test_ruclip_tokenizer_lowercases_adds_bos_eos_and_truncates(golden):
    model = read_yttm_model(golden)
    tokenizer = ruclip_tokenizer(model, context_length=77)
    for sentence, expected in zip(RUSSIAN_SENTENCES, GOLDEN_IDS):
        assert tokenizer.encode(sentence).ids == [2] + expected + [3]
    short = ruclip_tokenizer(model, context_length=6).encode(RUSSIAN_SENTENCES[0]).ids
    assert short == [2] + GOLDEN_IDS[0][:4] + [3]  # RuCLIPProcessor: tokens[:L-2], then BOS/EOS


def test_live_youtokentome_on_random_text(golden):
    yttm = pytest.importorskip("youtokentome")
    encoder = yttm.BPE(str(golden))
    bare = tokenizer_of(read_yttm_model(golden))
    rng = random.Random(0)
    alphabet = list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяabcxz0123456789 \t\n.,!-🌃") + ["\u2581", "\u00a0", "\u3000"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert bare.encode(text).ids == encoder.encode([text], output_type=yttm.OutputType.ID)[0], repr(text)


def test_malformed_model_is_a_config_error(tmp_path):
    from zsclip.errors import ConfigError

    (tmp_path / "bpe.model").write_text("2 0\n97 4\n", encoding="ascii")
    with pytest.raises(ConfigError):
        read_yttm_model(tmp_path / "bpe.model")

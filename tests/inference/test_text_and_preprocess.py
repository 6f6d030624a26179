import numpy as np
from PIL import Image
from zsclip.manifest import PreprocessConfig, TextConfig
from zsclip.preprocess import preprocess_image, to_rgb
from zsclip.text import clean_label, expand_prompts, tokenize, unknown_only


def test_clean_label_normalises_unicode_and_spaces():
    decomposed = "е\u0308ж"  # е + combining diaeresis -> ё (NFC)
    assert clean_label(f"  {decomposed}\t колючий \n") == "ёж колючий"
    assert expand_prompts(" кот ", ("{}", "фото {}")) == ["кот", "фото кот"]


def test_tokenize_pads_to_longest_and_caps_context(tiny_model_dir):
    from zsclip.text import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir / "tokenizer.json")
    cfg = TextConfig(context_length=3, pad_id=0, unk_id=1)
    ids, mask = tokenize(tokenizer, ["Красный", "зелёный синий цвет фото"], cfg)
    assert ids.shape == (2, 3) and ids.dtype == np.int64
    assert ids[0].tolist() == [2, 0, 0] and mask[0].tolist() == [1, 0, 0]
    assert ids[1].tolist() == [3, 4, 5] and mask[1].tolist() == [1, 1, 1]
    assert unknown_only(tokenizer, "оранжевый", cfg)
    assert not unknown_only(tokenizer, "оранжевый кот красный", cfg)


def test_preprocess_shapes_and_normalisation():
    cfg = PreprocessConfig(image_size=8, resize_mode="shortest_edge_center_crop", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out = preprocess_image(Image.new("RGB", (40, 20), (255, 0, 0)), cfg)
    assert out.shape == (3, 8, 8) and out.dtype == np.float32
    assert np.allclose(out[0], 1.0) and np.allclose(out[1], -1.0)


def test_alpha_is_composited_on_white_and_grey_becomes_rgb():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("L", (4, 4), 7)).getpixel((1, 1)) == (7, 7, 7)
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert to_rgb(sixteen).getpixel((0, 0)) == (255, 255, 255)


def test_prior_correction_discounts_a_class_that_soaks_up_every_image():
    from zsclip.classifier import correct_prior

    # class 0 takes 60% of every image; images 2-3 are really class 1 (relatively)
    post = np.array([[0.9, 0.1], [0.9, 0.1], [0.55, 0.45], [0.5, 0.5]])
    assert post.argmax(axis=1).tolist() == [0, 0, 0, 0]
    assert correct_prior(post, 1.0, pseudo_count=0.0).argmax(axis=1).tolist() == [0, 0, 1, 1]
    assert correct_prior(post, 0.0).argmax(axis=1).tolist() == [0, 0, 0, 0]
    # one image: the smoothed prior stays near uniform and the decision is unchanged
    assert correct_prior(np.array([[0.3, 0.7]]), 1.0).argmax() == 1

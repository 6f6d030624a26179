"""`zsclip-predict` on a hostile data dir: every file predicted, bad files named, memory bounded.

The data dir is generated here; the oversized images are real headers over little data, as a
decompression bomb would be, so nothing big is written or allocated by the test itself.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

RED, GREEN, BLUE = (220, 20, 20), (20, 200, 30), (25, 30, 210)
CLASSES = ["Красный", "зелёный", "синий"]
# Peak RSS of the whole run, hostile files included. A naive decode of bomb_jpeg.jpg alone needs 4.8 GB.
RSS_LIMIT_MB = 600

# Run the CLI in a child that reports its own peak RSS on stderr. VmHWM is this process image's own
# high-water mark; ru_maxrss would also count the parent's (pytest's) peak inherited across fork+exec.
RUNNER = """
import sys
from zsclip.cli import predict_main
try:
    predict_main(sys.argv[1:], prog_name="zsclip-predict")
    code = 0
except SystemExit as exc:
    code = exc.code
with open("/proc/self/status") as status:
    hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")][0]
sys.stderr.write("peak_rss_kb=%s\\n" % hwm)
sys.exit(code)
"""


def run_predict(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def peak_rss_mb(stderr: str) -> float:
    line = [x for x in stderr.splitlines() if x.startswith("peak_rss_kb=")][-1]
    return int(line.split("=")[1]) / 1024


# ---- file makers ---------------------------------------------------------------------------


def jpeg_bytes(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (PIL cannot write 16-bit RGB); `rows` are already filtered."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int) -> bytes:
    """A grayscale PNG header of width x height over one row of data (a bomb as seen at open)."""
    return png_bytes(width, height, 8, 0, b"\x00" * (width + 1))


def jpeg_with_size(width: int, height: int, progressive: bool = False) -> bytes:
    """A small red JPEG whose SOF marker claims width x height: what a JPEG bomb looks like."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (64, 64), RED), quality=90, progressive=progressive))
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_screen(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (8, 8), 1).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    """Stored 60x20 landscape, EXIF orientation 6 (rotate 90): displays 20x60."""
    image = Image.new("RGB", (60, 20), BLUE)
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(image, exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def palette_transparent_png() -> bytes:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 0, *GREEN] + [0] * 762)
    image.paste(1, (0, 0, 32, 24))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)  # the bottom quarter is transparent -> white
    return buffer.getvalue()


def saved(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noisy_jpeg(rgb: Tuple[int, int, int]) -> bytes:
    import numpy as np

    pixels = np.clip(np.random.default_rng(0).normal(rgb, 20, (240, 320, 3)), 0, 255).astype("uint8")
    return jpeg_bytes(Image.fromarray(pixels), quality=90)


def sixteen_bit_rgb_png() -> bytes:
    row = b"\x00" + struct.pack(">HHH", 60000, 3000, 2000) * 16
    return png_bytes(16, 16, 16, 2, row * 16)


def hostile_files() -> Tuple[Dict[str, bytes], Dict[str, int], List[str]]:
    """(file name -> bytes, decodable file -> expected class or -1 for any, names that must be warned about)."""
    good_red = noisy_jpeg(RED)
    truncated_png = saved(Image.new("RGB", (64, 64), GREEN), "PNG")
    files = {
        "ok.jpg": good_red,
        "truncated_jpeg.jpg": good_red[: len(good_red) * 2 // 3],
        "cmyk.jpg": jpeg_bytes(Image.new("RGB", (40, 40), GREEN).convert("CMYK")),
        "gray.png": saved(Image.new("L", (30, 30), 128), "PNG"),
        "gray16.png": saved(Image.new("I;16", (30, 30), 40000), "PNG"),
        "rgb16.png": sixteen_bit_rgb_png(),
        "palette_alpha.png": palette_transparent_png(),
        "rgba.png": saved(Image.new("RGBA", (30, 30), (*BLUE, 255)), "PNG"),
        "animated.gif": animated_gif(),
        "photo.webp": saved(Image.new("RGB", (30, 30), BLUE), "WEBP"),
        "exif_rotated.jpg": exif_rotated_jpeg(),
        "UPPER.JPG": jpeg_bytes(Image.new("RGB", (30, 30), GREEN)),
        "Shout.PNG": saved(Image.new("RGB", (30, 30), BLUE), "PNG"),
        "кот ünï 🐱.png": saved(Image.new("RGB", (30, 30), RED), "PNG"),
        "no_extension": saved(Image.new("RGB", (30, 30), GREEN), "PNG"),
        "strip.png": saved(Image.new("RGB", (1, 20000), RED), "PNG"),
        "bomb_jpeg.jpg": jpeg_with_size(40000, 40000),
        # undecodable: each must get a fallback class and a warning naming it
        "zero.jpg": b"",
        "text.jpg": b"this is not an image\n",
        "corrupt_jpeg.jpg": good_red[:600] + bytes(range(256)) * 40,
        "truncated_png.png": truncated_png[: len(truncated_png) // 2],
        "corrupt_png.png": truncated_png[:40] + b"\x00" * 200,
        "bomb_png.png": png_bomb(50000, 50000),  # > 2x MAX_IMAGE_PIXELS: PIL refuses at open
        "bomb_mid.png": png_bomb(10000, 10000),  # between 1x and 2x: refused by the decode limit
        "bomb_gif.gif": gif_with_screen(60000, 60000),
        "bomb_progressive.jpg": jpeg_with_size(30000, 30000, progressive=True),
    }
    expected = {
        "ok": 0, "truncated_jpeg": 0, "cmyk": 1, "gray": -1, "gray16": -1, "rgb16": 0, "palette_alpha": 1,
        "rgba": 2, "animated": 0, "photo": 2, "exif_rotated": 2, "UPPER": 1, "Shout": 2, "кот ünï 🐱": 0,
        "no_extension": 1, "strip": 0, "bomb_jpeg": -1,
    }
    bad = [
        "zero.jpg", "text.jpg", "corrupt_jpeg.jpg", "truncated_png.png", "corrupt_png.png", "bomb_png.png",
        "bomb_mid.png", "bomb_gif.gif", "bomb_progressive.jpg",
    ]
    return files, expected, bad


def make_hostile_data_dir(root: Path) -> Tuple[Path, Dict[str, int], List[str]]:
    files, expected, bad = hostile_files()
    dataset = root / "hostile"
    (dataset / "img").mkdir(parents=True)
    (dataset / "classes.json").write_text(json.dumps(CLASSES, ensure_ascii=False), encoding="utf-8")
    for name, data in files.items():
        (dataset / "img" / name).write_bytes(data)
    (dataset / "img" / "a_subfolder").mkdir()  # not a file: ignored
    stems = [Path(name).stem for name in files]
    assert len(set(stems)) == len(stems), "stems must be unique: OUT.json is keyed by stem"
    # a dataset with duplicated class names: warned, still predicted
    dups = root / "dups"
    (dups / "img").mkdir(parents=True)
    (dups / "classes.json").write_text(json.dumps(["красный", "Красный", "синий"], ensure_ascii=False), "utf-8")
    (dups / "img" / "one.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (20, 20), BLUE)))
    # folders that are not datasets: skipped with a warning
    (root / "no_classes" / "img").mkdir(parents=True)
    (root / "no_img").mkdir()
    (root / "no_img" / "classes.json").write_text("[\"a\"]", "utf-8")
    return root, expected, bad


# ---- tests ---------------------------------------------------------------------------------


def test_load_image_handles_every_decodable_case(tmp_path: Path) -> None:
    from zsclip.preprocess import ImageDecodeError, load_image

    files, expected, bad = hostile_files()
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        if name in bad:
            with pytest.raises(ImageDecodeError):
                load_image(path, 16)
            continue
        image = load_image(path, 16)
        assert image.mode == "RGB", name
    assert load_image(tmp_path / "exif_rotated.jpg", 16).size == (20, 60)
    assert load_image(tmp_path / "bomb_jpeg.jpg", 16).size == (5000, 5000)  # decoded at 1/8 scale
    assert load_image(tmp_path / "animated.gif", 16).getpixel((5, 5))[0] > 200  # first frame: red
    assert load_image(tmp_path / "palette_alpha.png", 16).getpixel((5, 30)) == (255, 255, 255)


def test_preprocess_bounds_extreme_aspect_ratios() -> None:
    from zsclip.manifest import PreprocessConfig
    from zsclip.preprocess import preprocess_image

    cfg = PreprocessConfig(image_size=64)
    for size in [(1, 50000), (50000, 1), (3, 7)]:
        assert preprocess_image(Image.new("RGB", size, RED), cfg).shape == (3, 64, 64)


def test_hostile_data_dir_every_image_predicted(tiny_model_dir: Path, tmp_path: Path) -> None:
    data_dir, expected, bad = make_hostile_data_dir(tmp_path / "data")
    out = tmp_path / "out.json"
    result = run_predict(data_dir, out, "--model", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    predictions = json.loads(out.read_text(encoding="utf-8"))
    img = data_dir / "hostile" / "img"
    assert set(predictions["hostile"]) == {p.stem for p in img.iterdir() if p.is_file()}
    assert set(predictions) == {"hostile", "dups"}
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    for name in bad:
        assert any(name in line for line in warnings), f"no warning names {name}:\n{result.stderr}"
    for stem, label in expected.items():
        assert not any(f"/{stem}." in line or line.endswith(f"/{stem}") for line in warnings), stem
        if label >= 0:
            assert predictions["hostile"][stem] == label, stem
    for label in predictions["hostile"].values():
        assert 0 <= label < len(CLASSES)
    assert any("duplicates class 0" in line for line in warnings)
    assert any("no_classes" in line and "skipping" in line for line in warnings)
    assert any("no_img" in line and "skipping" in line for line in warnings)
    rss = peak_rss_mb(result.stderr)
    print(f"hostile run: peak RSS {rss:.0f} MB")
    assert rss < RSS_LIMIT_MB


def test_non_utf8_file_name(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A file name that is not UTF-8 (Linux allows any bytes) must not crash the JSON write."""
    import os

    dataset = tmp_path / "data" / "raw"
    (dataset / "img").mkdir(parents=True)
    (dataset / "classes.json").write_text(json.dumps(CLASSES, ensure_ascii=False), encoding="utf-8")
    try:
        with open(os.path.join(os.fsencode(dataset / "img"), b"caf\xe9.jpg"), "wb") as handle:
            handle.write(jpeg_bytes(Image.new("RGB", (20, 20), RED)))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    out = tmp_path / "out.json"
    result = run_predict(tmp_path / "data", out, "--model", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    predictions = json.loads(out.read_text(encoding="utf-8"))
    assert list(predictions["raw"].values()) == [0]


BROKEN_CLASSES = {
    "invalid_json": "[\"a\", ",
    "not_a_list": "{\"a\": 1}",
    "empty": "[]",
    "non_string": "[\"a\", 3]",
    "blank_string": "[\"a\", \"  \"]",
    "not_utf8": b"[\"\xff\xfe\"]",
}


@pytest.mark.parametrize("case", sorted(BROKEN_CLASSES))
def test_broken_classes_json_is_one_clear_error(case: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "data" / "broken"
    (dataset / "img").mkdir(parents=True)
    content = BROKEN_CLASSES[case]
    path = dataset / "classes.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    (dataset / "img" / "a.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (20, 20), RED)))
    out = tmp_path / "out.json"
    result = run_predict(tmp_path / "data", out, "--model", tiny_model_dir)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    debug = run_predict(tmp_path / "data", out, "--model", tiny_model_dir, "--debug")
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize("case", ["missing_data_dir", "missing_out_folder", "out_is_dir"])
def test_user_mistakes_fail_before_any_work(case: str, tmp_path: Path) -> None:
    """Exit 1 with one line, no traceback, before the model is even looked at (it does not exist)."""
    data_dir = tmp_path / "data" / "d"
    (data_dir / "img").mkdir(parents=True)
    (data_dir / "classes.json").write_text("[\"a\"]", "utf-8")
    out = tmp_path / "out.json"
    if case == "missing_data_dir":
        data_dir = tmp_path / "nope"
    elif case == "missing_out_folder":
        out = tmp_path / "nope" / "out.json"
    else:
        out = tmp_path
    result = run_predict(data_dir, out, "--model", tmp_path / "no_model")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model" not in errors[0], result.stderr


def test_usage_error_exit_code_2(tmp_path: Path) -> None:
    result = run_predict(tmp_path)
    assert result.returncode == 2

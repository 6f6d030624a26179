"""`python -m zsclip_bench.gcompris_proxy`: GCompris' Qt resource files -> proxy sets (on generated .rcc files)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Dict, Iterable

import pytest
from click.testing import CliRunner
from PIL import Image
from zsclip.errors import InputDataError
from zsclip_bench.gcompris_proxy import (
    CATEGORY_IMAGES,
    RCC_FILES,
    WORD_NAMES,
    WORD_PICTURES,
    GComprisProxyConfig,
    build_gcompris_proxy,
    main,
    read_rcc,
)

EXPLORE = "gcompris/src/activities/explore_{}_animals/resource/animals"


def write_rcc(path: Path, files: Dict[str, bytes], compressed: Iterable[str] = (), flags: int = 0) -> Path:
    """A Qt binary resource (format 3): header, data, names, then the tree (children of a node contiguous)."""
    tree: dict = {}
    for name, payload in files.items():
        node = tree
        *folders, leaf = name.split("/")
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = payload
    names, offsets, data, nodes = bytearray(), {}, bytearray(), []
    entries = [("", tree)]
    for name, obj in entries:  # breadth first: entries grows while we walk it
        if name not in offsets:
            offsets[name] = len(names)
            names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        if isinstance(obj, dict):
            kids = sorted(obj.items())
            nodes.append(struct.pack(">IHII", offsets[name], 0x2, len(kids), len(entries)) + bytes(8))
            entries.extend(kids)
        else:
            packed = name in compressed
            body = struct.pack(">I", len(obj)) + zlib.compress(obj) if packed else obj
            nodes.append(struct.pack(">IHHHI", offsets[name], flags | int(packed), 0, 0, len(data)) + bytes(8))
            data += struct.pack(">I", len(body)) + body
    header = 24
    names_at = header + len(data)
    tree_at = names_at + len(names)
    path.write_bytes(struct.pack(">4sIIIII", b"qres", 3, tree_at, header, names_at, 0) + data + names + b"".join(nodes))
    return path


def picture(fmt: str = "WEBP", colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buffer, fmt)
    return buffer.getvalue()


def fake_rcc_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    write_rcc(root / "categorization.rcc", {
        f"{CATEGORY_IMAGES}/tools/hammer1.webp": picture(),
        f"{CATEGORY_IMAGES}/tools/hammer2.png": picture("PNG"),
        f"{CATEGORY_IMAGES}/tools/wrench.webp": picture(),
        f"{CATEGORY_IMAGES}/tools/README": b"credits",
        f"{CATEGORY_IMAGES}/fishes/fish12.webp": picture(),
        f"{CATEGORY_IMAGES}/renewable/solar3.webp": picture(),
        f"{CATEGORY_IMAGES}/renewable/geothermal.webp": picture(),  # not a class of the coarse set
        f"{CATEGORY_IMAGES}/numbers/one.webp": picture(),  # folder not used
    }, compressed={"hammer1.webp", "README"})
    write_rcc(root / "explore_farm_animals.rcc", {
        EXPLORE.format("farm") + "/cat.webp": picture(), EXPLORE.format("farm") + "/farm.svg": b"<svg/>",
    })
    write_rcc(root / "explore_world_animals.rcc", {EXPLORE.format("world") + "/narwhal.webp": picture()})
    names = {"apple.ogg": "яблоко", "red.ogg": "красный", "butterfly.ogg": ""}
    write_rcc(root / "lang.rcc", {
        f"{WORD_PICTURES}/apple.webp": picture(), f"{WORD_PICTURES}/red.webp": picture(),  # a colour: left out
        f"{WORD_PICTURES}/butterfly.webp": picture(),  # no Russian word: left out
        WORD_NAMES: json.dumps(names, ensure_ascii=False).encode("utf-8"),
    }, compressed={"content-ru.json"})
    return root


def read_set(root: Path, name: str) -> list:
    classes = json.loads((root / "datasets" / name / "classes.json").read_text(encoding="utf-8"))
    gt = json.loads((root / "gt.json").read_text(encoding="utf-8"))[name]
    return [classes[gt[stem]] for stem in sorted(gt)]


def test_read_rcc_returns_every_file_with_its_path_plain_or_zlib(tmp_path):
    files = {"a/b/c.txt": b"plain", "a/d.bin": b"\x00" * 100, "top.json": b"{}"}
    rcc = write_rcc(tmp_path / "x.rcc", files, compressed={"d.bin"})
    assert read_rcc(rcc) == files


def test_builds_the_four_sets_with_a_priori_names(tmp_path):
    out = tmp_path / "proxy"
    counts = build_gcompris_proxy(GComprisProxyConfig(out_dir=out, rcc_dir=fake_rcc_dir(tmp_path / "rcc")))
    assert counts == {"gc_coarse": {"images": 5, "classes": 3}, "gc_tools": {"images": 3, "classes": 2},
                      "gc_animals": {"images": 2, "classes": 2}, "gc_words": {"images": 1, "classes": 1}}
    assert read_set(out, "gc_coarse") == ["рыба", "солнечная батарея", "инструмент", "инструмент", "инструмент"]
    assert read_set(out, "gc_tools") == ["молоток", "молоток", "гаечный ключ"]
    assert read_set(out, "gc_animals") == ["кошка", "нарвал"]
    assert read_set(out, "gc_words") == ["яблоко"]
    with Image.open(out / "datasets" / "gc_tools" / "img" / "0000.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.getpixel((5, 5))[0] > 150


def test_missing_or_broken_resources_give_one_line_errors_and_write_nothing(tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "out"), "--rcc", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "gcompris-qt-data" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()

    rcc_dir = fake_rcc_dir(tmp_path / "rcc")
    (rcc_dir / "lang.rcc").write_bytes(b"PK\x03\x04 not a resource")
    result = CliRunner().invoke(main, [str(tmp_path / "out"), "--rcc", str(rcc_dir)])
    assert result.exit_code == 1 and "lang.rcc: not a Qt resource file" in result.output
    assert not (tmp_path / "out").exists()

    good = (rcc_dir / "explore_world_animals.rcc").read_bytes()
    (rcc_dir / "lang.rcc").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputDataError, match="lang.rcc: (damaged|truncated)"):
        read_rcc(rcc_dir / "lang.rcc")


def test_a_folder_that_lists_itself_is_a_damaged_file_not_endless_recursion(tmp_path):
    rcc = write_rcc(tmp_path / "loop.rcc", {"a/pic.webp": b"x"})
    blob = bytearray(rcc.read_bytes())
    tree_at = struct.unpack_from(">I", blob, 8)[0]
    struct.pack_into(">I", blob, tree_at + 22 + 10, 1)  # folder "a" (node 1): first child = node 1 itself
    rcc.write_bytes(bytes(blob))
    with pytest.raises(InputDataError, match=r"loop.rcc: damaged Qt resource file \(node 1 listed twice\)"):
        read_rcc(rcc)


def test_zstd_entries_are_refused_by_name(tmp_path):
    rcc = write_rcc(tmp_path / "z.rcc", {"a/pic.webp": b"zstd bytes"}, flags=0x4)
    with pytest.raises(InputDataError, match=r"z.rcc: a/pic.webp is zstd-compressed"):
        read_rcc(rcc)


def test_a_non_empty_out_dir_is_refused(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(main, [str(tmp_path / "busy"), "--rcc", str(fake_rcc_dir(tmp_path / "rcc"))])
    assert result.exit_code == 1 and "not an empty folder" in result.output
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep.txt"]
    assert set(RCC_FILES) == {p.name for p in (tmp_path / "rcc").iterdir()}

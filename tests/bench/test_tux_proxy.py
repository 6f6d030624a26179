"""`python -m zsclip_bench.tux_proxy`: Tux Paint photo stamps -> fine and coarse proxy sets (on a fake stamps tree)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image
from zsclip_bench.tux_proxy import TuxProxyConfig, build_tux_proxy, main


def stamp(root: Path, rel: str, russian: str | None, colour=(200, 30, 30)) -> None:
    png = root / rel
    png.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGBA", (40, 30), (0, 0, 0, 0))  # transparent, with an opaque square in the middle
    image.paste(Image.new("RGBA", (10, 10), colour + (255,)), (15, 10))
    image.save(png)
    lines = ["A thing.", "de.utf8=Ein Ding."] + ([f"ru.utf8={russian}"] if russian else [])
    png.with_suffix(".txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def fake_stamps(root: Path) -> Path:
    for i, name in enumerate(["Ворона.", "Курица", "Утка.", "Курица"]):
        stamp(root, f"animals/birds/bird{i}.png", name)
    stamp(root, "animals/birds/cartoon/tux.png", "Пингвин Тукс")  # drawn: skipped
    stamp(root, "animals/birds/silent.png", None)  # no Russian description: skipped
    stamp(root, "food/fruit/apple.png", "Яблоко")
    stamp(root, "seasonal/christmas/tree.png", "Ёлка")  # holiday folder: skipped
    return root


def test_builds_fine_and_coarse_sets(tmp_path):
    counts = build_tux_proxy(TuxProxyConfig(out_dir=tmp_path / "proxy", stamps=fake_stamps(tmp_path / "stamps"), min_fine=3))
    assert counts == {"fine/animals_birds": {"images": 4, "classes": 3},
                      "coarse/tux_coarse": {"images": 5, "classes": 11}}
    birds = tmp_path / "proxy" / "fine" / "datasets" / "animals_birds"
    classes = json.loads((birds / "classes.json").read_text(encoding="utf-8"))
    assert classes == ["Ворона", "Курица", "Утка"]  # trailing full stops dropped, shared names merged
    gt = json.loads((tmp_path / "proxy" / "fine" / "gt.json").read_text(encoding="utf-8"))
    assert [classes[gt["animals_birds"][f"{i:04d}"]] for i in range(4)] == ["Ворона", "Курица", "Утка", "Курица"]
    with Image.open(birds / "img" / "0000.jpg") as image:  # pasted onto white, RGB
        assert image.mode == "RGB" and image.getpixel((1, 1)) == (255, 255, 255)
        assert image.getpixel((20, 15))[0] > 150
    coarse = tmp_path / "proxy" / "coarse"
    names = json.loads((coarse / "datasets" / "tux_coarse" / "classes.json").read_text(encoding="utf-8"))
    labels = json.loads((coarse / "gt.json").read_text(encoding="utf-8"))["tux_coarse"]
    assert sorted(names[c] for c in labels.values()) == ["птица"] * 4 + ["фрукт"]


def test_cli_refuses_missing_stamps_and_a_non_empty_out(tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "out"), "--stamps", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "tuxpaint-stamps-default" in result.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(main, [str(tmp_path / "busy"), "--stamps", str(fake_stamps(tmp_path / "stamps"))])
    assert result.exit_code == 1 and "not an empty folder" in result.output
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep.txt"]


def test_an_undecodable_stamp_is_left_out_with_a_warning(tmp_path, caplog):
    root = fake_stamps(tmp_path / "stamps")
    (root / "animals" / "birds" / "bird1.png").write_bytes(b"not a png")
    counts = build_tux_proxy(TuxProxyConfig(out_dir=tmp_path / "proxy", stamps=root, min_fine=3))
    assert counts["fine/animals_birds"]["images"] == 3
    assert "bird1.png: not a decodable picture" in caplog.text
    gt = json.loads((tmp_path / "proxy" / "fine" / "gt.json").read_text(encoding="utf-8"))
    assert "0001" not in gt["animals_birds"]
    assert not (tmp_path / "proxy" / "fine" / "datasets" / "animals_birds" / "img" / "0001.jpg").exists()

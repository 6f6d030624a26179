import json

import pytest
from click.testing import CliRunner
from zsclip.cli import eval_main, predict_main
from zsclip.evaluate import check_strict


@pytest.mark.parametrize("command", [predict_main, eval_main])
def test_help(command):
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_predict_end_to_end_is_correct_and_strict_valid(tiny_model_dir, data_dir, tmp_path, variant):
    root, gt = data_dir
    out = tmp_path / "out.json"
    result = CliRunner().invoke(predict_main, [str(root), str(out), "--model", str(tiny_model_dir), "--variant", variant])
    assert result.exit_code == 0, result.output
    pred = json.loads(out.read_text(encoding="utf-8"))
    check_strict(gt, pred, {"colours": 3})
    assert pred == gt


def test_quiet_prints_nothing_but_warnings(tiny_model_dir, data_dir, tmp_path):
    root, gt = data_dir
    args = [str(root), str(tmp_path / "out.json"), "--model", str(tiny_model_dir), "--decode-workers", "1"]
    loud = CliRunner().invoke(predict_main, args)
    assert loud.exit_code == 0 and "predicting" in loud.output and "images in 1 dataset" in loud.output
    quiet = CliRunner().invoke(predict_main, [*args, "-q"])
    assert quiet.exit_code == 0 and quiet.output == ""
    (root / "colours" / "img" / "broken.jpg").write_bytes(b"not an image")
    warned = CliRunner().invoke(predict_main, [*args, "-q"])
    assert warned.exit_code == 0 and "broken.jpg" in warned.output and "predicting" not in warned.output


def test_undecodable_image_gets_a_guess_and_a_warning(tiny_model_dir, data_dir, tmp_path):
    root, gt = data_dir
    (root / "colours" / "img" / "broken.jpg").write_bytes(b"<html>not an image</html>")
    (root / "colours" / "img" / "empty.PNG").write_bytes(b"")
    out = tmp_path / "out.json"
    result = CliRunner().invoke(predict_main, [str(root), str(out), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    pred = json.loads(out.read_text(encoding="utf-8"))["colours"]
    assert set(pred) == set(gt["colours"]) | {"broken", "empty"}
    assert "broken.jpg" in result.output and "2 undecodable" in result.output
    strict = CliRunner().invoke(predict_main, [str(root), str(tmp_path / "s.json"), "--model", str(tiny_model_dir), "--strict"])
    assert strict.exit_code == 1 and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["{root}/missing", "{tmp}/o.json"], "does not exist"),
        (["{root}", "{tmp}/no/such/dir/o.json"], "output folder"),
        (["{root}", "{tmp}/o.json", "--model", "{tmp}/nomodel"], "zsclip-export"),
        (["{root}", "{tmp}/o.json", "--variant", "fp16"], "variant 'fp16'"),
    ],
)
def test_user_errors_are_one_line_exit_1(tiny_model_dir, data_dir, tmp_path, args, message):
    root, _ = data_dir
    argv = [a.format(root=root, tmp=tmp_path) for a in args]
    if "--model" not in argv:
        argv += ["--model", str(tiny_model_dir)]
    result = CliRunner().invoke(predict_main, argv)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.json").exists()


def test_eval_cli_prints_dataset_and_mean(tmp_path, data_dir):
    root, gt = data_dir
    (tmp_path / "gt.json").write_text(json.dumps(gt, ensure_ascii=False), encoding="utf-8")
    pred = {"colours": {k: 0 for k in gt["colours"]}}
    (tmp_path / "out.json").write_text(json.dumps(pred, ensure_ascii=False), encoding="utf-8")
    png = tmp_path / "cm.png"
    result = CliRunner().invoke(eval_main, [str(tmp_path / "gt.json"), str(tmp_path / "out.json"), "--data", str(root),
                                            "--confusion", str(png)])
    assert result.exit_code == 0, result.output
    assert "colours: accuracy 0.3333" in result.output and "mean accuracy: 0.3333" in result.output
    assert png.stat().st_size > 0


def test_eval_quiet_prints_only_the_mean(tmp_path, data_dir):
    root, gt = data_dir
    (tmp_path / "gt.json").write_text(json.dumps(gt, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "out.json").write_text(json.dumps(gt, ensure_ascii=False), encoding="utf-8")
    png = tmp_path / "cm.png"
    args = [str(tmp_path / "gt.json"), str(tmp_path / "out.json"), "--data", str(root), "--per-class"]
    result = CliRunner().invoke(eval_main, [*args, "-q", "--confusion", str(png)])
    assert result.exit_code == 0, result.output
    assert result.output == "mean accuracy: 1.0000\n"
    assert png.stat().st_size > 0
    loud = CliRunner().invoke(eval_main, args)
    assert "per class:" in loud.output and loud.output.endswith("mean accuracy: 1.0000\n")

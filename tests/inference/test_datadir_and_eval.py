import json

import pytest
from zsclip.datadir import find_datasets, read_classes
from zsclip.errors import InputDataError
from zsclip.evaluate import check_strict, evaluate


@pytest.mark.parametrize(
    "content, message",
    [("{bad", "invalid JSON"), ('{"a": 1}', "must be a JSON list"), ("[]", "empty"), ('["кот", 3]', "entry 1")],
)
def test_broken_classes_json_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "classes.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputDataError, match=message) as info:
        read_classes(path)
    assert str(path) in str(info.value)


def test_trailing_comma_is_named_and_a_bom_is_fine(tmp_path):
    path = tmp_path / "classes.json"
    path.write_bytes('\ufeff["кот", "пес",\n]'.encode("utf-8"))
    with pytest.raises(InputDataError, match="trailing comma"):
        read_classes(path)
    path.write_bytes('\ufeff["кот", "пес"]'.encode("utf-8"))
    assert read_classes(path) == ("кот", "пес")


def test_empty_img_folder_warns(data_dir, caplog):
    root, _ = data_dir
    for image in (root / "colours" / "img").iterdir():
        image.unlink()
    assert find_datasets(root)[0].images == ()
    assert "colours" in caplog.text and "holds no image" in caplog.text


def test_a_data_dir_one_level_off_gets_a_hint(data_dir):
    root, _ = data_dir
    with pytest.raises(InputDataError, match=f"did you mean {root}\\?"):
        find_datasets(root.parent)
    with pytest.raises(InputDataError, match=f"did you mean {root / 'colours'}\\?"):
        find_datasets(root / "colours" / "img")


def test_duplicate_classes_warn_but_keep_indices(tmp_path, caplog):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(["кот", "Кот", "пес"], ensure_ascii=False), encoding="utf-8")
    assert read_classes(path) == ("кот", "Кот", "пес")
    assert "duplicates class 0" in caplog.text


def test_folders_without_classes_are_skipped(data_dir, caplog):
    root, _ = data_dir
    (root / "junk").mkdir()
    datasets = find_datasets(root)
    assert [d.name for d in datasets] == ["colours"] and len(datasets[0].images) == 6
    assert "skipping" in caplog.text and "junk" in caplog.text
    with pytest.raises(InputDataError, match="does not exist"):
        find_datasets(root / "missing")


def test_evaluate_matches_contest_mean_of_dataset_accuracies():
    gt = {"a": {"x": 0, "y": 1}, "b": {"z": 2, "w": 2, "v": 0}}
    pred = {"a": {"x": 0, "y": 0}, "b": {"z": 2, "w": 2, "v": 0}}
    report = evaluate(gt, pred, n_classes={"a": 2, "b": 3})
    assert [round(d.accuracy, 3) for d in report.datasets] == [0.5, 1.0]
    assert report.mean_accuracy == pytest.approx(0.75)
    assert report.datasets[0].per_class == {0: (1, 1), 1: (0, 1)}


@pytest.mark.parametrize(
    "pred, message",
    [
        ({"a": {"x": 0}}, "miss 1 image"),
        ({}, "miss dataset"),
        ({"a": {"x": 0, "y": 0, "q": 1}}, "unknown image"),
        ({"a": {"x": 0, "y": 5}}, "class index 5 >= 2"),
        ({"a": {"x": 0, "y": 0}, "c": {}}, "unknown dataset"),
    ],
)
def test_strict_rules(pred, message):
    with pytest.raises(InputDataError, match=message):
        check_strict({"a": {"x": 0, "y": 1}}, pred, {"a": 2})

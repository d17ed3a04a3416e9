"""data.yaml parsing: names, keys, paths, format-specific keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yoloslim.data import load_data_config, load_samples
from yoloslim.data.config import check_class_count
from yoloslim.data.testing import fake_images, write_yolo
from yoloslim.errors import ConfigError, DataError, ModelError

NAMES = ["cat", "dog"]


def _splits():
    return {"train": fake_images(4, seed=0, prefix="t"), "val": fake_images(2, seed=1, prefix="v")}


def test_names_as_dict_and_nc(tmp_path):
    path = write_yolo(tmp_path, _splits(), NAMES)
    data = yaml.safe_load(path.read_text())
    data.update(names={1: "dog", 0: "cat"}, nc=2, download="https://example.com", test=None)
    path.write_text(yaml.safe_dump(data))
    assert load_data_config(path).names == NAMES


def test_relative_path_resolves_against_yaml_folder(tmp_path, monkeypatch):
    path = write_yolo(tmp_path / "ds", _splits(), NAMES)
    monkeypatch.chdir(tmp_path)
    cfg = load_data_config(Path("ds") / "data.yaml")
    assert cfg.root == (tmp_path / "ds").resolve()
    assert len(load_samples(cfg, "val")) == 2
    assert cfg.yaml_path == Path("ds") / "data.yaml" and path.exists()
    # a data.yaml linked into another folder still means the dataset beside the real file
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "data.yaml").symlink_to(path)
    linked = load_data_config(tmp_path / "project" / "data.yaml")
    assert linked.root == cfg.root and len(load_samples(linked, "val")) == 2


@pytest.mark.parametrize("key", ["train", "val", "names"])
def test_data_yaml_missing_key(tmp_path, key):
    path = write_yolo(tmp_path, _splits(), NAMES)
    data = yaml.safe_load(path.read_text())
    del data[key]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match=rf"data\.yaml: missing required key '{key}'"):
        load_data_config(path)


@pytest.mark.parametrize(
    ("key", "value"), [("path", "nowhere"), ("train", "images/nowhere"), ("val", "missing.txt")]
)
def test_data_yaml_path_not_existing(tmp_path, key, value):
    path = write_yolo(tmp_path, _splits(), NAMES)
    data = yaml.safe_load(path.read_text())
    data[key] = value
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match=rf"data\.yaml: key '{key}': .*(nowhere|missing\.txt)"):
        load_data_config(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"nc": 3}, "key 'nc' is 3 but 'names' has 2"),
        ({"names": []}, "key 'names' is empty"),
        ({"names": ["a", "a"]}, "key 'names' has duplicates"),
        ({"names": {0: "a", 2: "b"}}, r"key 'names': ids must be 0\.\.1"),
        ({"format": "kitti"}, "key 'format' must be one of"),
        ({"format": "coco"}, "missing required key 'train_images'"),
        ({"nc": 2.9}, r"key 'nc' must be an integer, got 2\.9"),
        ({"names": [True, False]}, r"key 'names': entry True is a YAML boolean .*quote the name"),
        # an Ultralytics user's path, relative to the working folder: said how it was read
        (
            {"path": "work/shapes"},
            r"key 'path': folder .* does not exist \(work/shapes relative to ",
        ),
    ],
)
def test_data_yaml_bad_values(tmp_path, edit, match):
    path = write_yolo(tmp_path, _splits(), NAMES)
    data = yaml.safe_load(path.read_text())
    data.update(edit)
    if data.get("format") == "coco":
        data["train"] = str(path)  # an existing file, so the missing images key is reported
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match=r"data\.yaml: " + match):
        load_data_config(path)


def test_names_that_yaml_reads_as_booleans_are_refused_as_written(tmp_path):
    path = write_yolo(tmp_path, _splits(), NAMES)
    text = path.read_text()
    path.write_text(text.replace(yaml.safe_dump({"names": NAMES}).strip(), "names: [yes, no]"))
    assert "names: [yes, no]" in path.read_text()
    with pytest.raises(DataError, match=r"entry True is a YAML boolean"):
        load_data_config(path)


def test_blank_path_and_roboflow_parent_paths(tmp_path, caplog):
    """A template's blank ``path:`` is the yaml's folder, as an absent one; Roboflow's YOLO
    export names ``../train/images`` beside the folders it means, as Ultralytics reads it."""
    path = write_yolo(tmp_path, _splits(), NAMES)
    data = yaml.safe_load(path.read_text())
    data["path"] = None
    path.write_text(yaml.safe_dump(data))
    assert load_data_config(path).root == tmp_path.resolve()
    data.pop("path")
    data.update(train=f"../{data['train']}", val=f"../{data['val']}", test=f"../{data['val']}")
    path.write_text(yaml.safe_dump(data))
    cfg = load_data_config(path)
    assert len(load_samples(cfg, "train")) == 4 and len(load_samples(cfg, "val")) == 2
    load_data_config(path)  # loaded again (train, then its validation): warned once per key
    assert caplog.text.count("does not exist; using") == 2
    assert "key 'test'" not in caplog.text  # its test: alike (audit51 review2 N3)


def test_data_yaml_written_on_windows(tmp_path, caplog):
    """audit49 data F4: ``train: images\\train`` (a data.yaml written on Windows)."""
    path = write_yolo(tmp_path, _splits(), NAMES)
    data = yaml.safe_load(path.read_text())
    data.pop("path", None)
    data.update(train=data["train"].replace("/", "\\"), val=data["val"].replace("/", "\\"))
    data["test"] = data["val"]  # not warned of as missing (audit51 review F2)
    assert "\\" in data["train"]
    path.write_text(yaml.safe_dump(data))
    with caplog.at_level("WARNING"):
        cfg = load_data_config(path)
    assert len(load_samples(cfg, "train")) == 4 and len(load_samples(cfg, "val")) == 2
    assert "does not exist" not in caplog.text


def test_data_yaml_missing_file_and_not_a_mapping(tmp_path):
    with pytest.raises(DataError, match="data.yaml not found"):
        load_data_config(tmp_path / "data.yaml")
    (tmp_path / "data.yaml").write_text("- just\n- a list\n")
    with pytest.raises(DataError, match="expected a mapping"):
        load_data_config(tmp_path / "data.yaml")
    # a second val: line silently replaced the first (the split read was not the one written)
    (tmp_path / "data.yaml").write_text("train: a\nval: b\nnames: [x]\nval: a\n")
    with pytest.raises(DataError, match=r"data\.yaml: not valid YAML \(line 4, column 1: "
                       r"found the key 'val' twice\)"):  # fmt: skip
        load_data_config(tmp_path / "data.yaml")
    (tmp_path / "data.yaml").write_bytes("names: [caf\xe9]\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"data\.yaml: not a text file, so no data config"):
        load_data_config(tmp_path / "data.yaml")


def test_load_samples_bad_split(tmp_path):
    cfg = load_data_config(write_yolo(tmp_path, _splits(), NAMES))
    with pytest.raises(ConfigError, match="split"):
        load_samples(cfg, "test")


def test_several_sources_get_unique_ids(tmp_path):
    path = write_yolo(tmp_path, _splits(), NAMES)
    data = yaml.safe_load(path.read_text())
    data["train"] = ["images/train", "images/val"]
    path.write_text(yaml.safe_dump(data))
    samples = load_samples(load_data_config(path), "train")
    assert [s.image_id for s in samples] == list(range(6))


def test_folder_instead_of_data_yaml_says_so(tmp_path):
    write_yolo(tmp_path, _splits(), NAMES)
    with pytest.raises(
        DataError, match=r"expected a data\.yaml file, got a folder \(pass .*data\.yaml\)"
    ):
        load_data_config(tmp_path)
    with pytest.raises(DataError, match=r"got a folder$"):
        load_data_config(tmp_path / "images")


def _empty_splits(root: Path) -> tuple[Path, str]:
    """``root/data.yaml``'s path and the text naming ``root``'s (made) empty train and val
    folders, for a test to add keys to."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
    return root / "data.yaml", "train: images/train\nval: images/val\nnames: [a]\n"


def test_a_test_path_that_does_not_exist_is_warned_about(tmp_path, caplog):
    yaml_path, base = _empty_splits(tmp_path)
    (tmp_path / "images" / "test").mkdir()
    with caplog.at_level("WARNING", logger="yoloslim.data.config"):
        yaml_path.write_text(base + "test: images/test\n")
        load_data_config(yaml_path)
        assert caplog.text == ""
        yaml_path.write_text(base + "test: images/nonexistent\n")  # accepted without a word
        load_data_config(yaml_path)
    assert "key 'test':" in caplog.text and "nonexistent does not exist" in caplog.text


def test_a_test_path_under_home_and_a_file_given_as_a_folder(tmp_path, monkeypatch, caplog):
    home = tmp_path / "home"
    (home / "held_out").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    yaml_path, base = _empty_splits(tmp_path / "ds")
    with caplog.at_level("WARNING", logger="yoloslim.data.config"):
        # ~ was joined to the yaml's folder first: warned about as missing (audit49 data F3)
        yaml_path.write_text(base + "test: ~/held_out\n")
        load_data_config(yaml_path)
    assert caplog.text == ""
    # ~nosuchuser was a RuntimeError's traceback (review of audit49's fixes, F2)
    yaml_path.write_text(base.replace("images/val", "~nosuchuser_ys/val"))
    with pytest.raises(DataError, match=r"key 'val': ~nosuchuser_ys/val: "):
        load_data_config(yaml_path)
    # a file where a folder goes was said not to exist (audit49 data F5)
    yaml_path.write_text(base + "path: data.yaml\n")
    with pytest.raises(DataError, match=r"key 'path': folder .*data.yaml is a file, not a folder"):
        load_data_config(yaml_path)


def test_check_class_count_names_both_sides(tmp_path):
    write_yolo(tmp_path, _splits(), NAMES)
    data = tmp_path / "data.yaml"
    check_class_count(2, "m.pt", data)  # equal: nothing raised
    with pytest.raises(ModelError, match=r"^m.pt has 3 classes but .*data.yaml has 2$"):
        check_class_count(3, "m.pt", data)
    with pytest.raises(DataError, match="data.yaml not found"):
        check_class_count(2, "m.pt", tmp_path / "none" / "data.yaml")

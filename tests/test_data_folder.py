"""A dataset of one's own: classes.json into a ClassTable, the `folder` adapter, dataset plugins
(the `diffseg.datasets` entry point group) and the class table in the cache record."""

import json
import types
from importlib import metadata

import numpy as np
import pytest
from datagen import FOLDER_CLASSES, make_folder, save_grey

from diffseg.cache.record import CUSTOM_SPACE, DatasetRecord
from diffseg.core.classes import CITYSCAPES, CLASS_NAMES, PALETTE, ClassTable
from diffseg.core.errors import DataError, DiffsegError
from diffseg.data import dataset_classes, open_dataset
from diffseg.data.base import Entry
from diffseg.data.readers import read_train_id_label
from diffseg.pipeline import prompts


def test_class_table_from_the_list_and_the_object_form():
    plain = ClassTable.from_json(list(FOLDER_CLASSES), "classes.json")
    assert plain.names == ("background", "crop row", "weed", "soil", "stone")
    assert plain.prompts[1] == "rows of crops" and plain.prompts[2] == "weed"  # the name when no prompt
    assert plain.ignore == 255 and plain.palette.shape == (5, 3)
    shuffled = {"classes": list(reversed(FOLDER_CLASSES)), "ignore": 7}
    other = ClassTable.from_json(shuffled, "classes.json")
    assert other.names == plain.names and other.ignore == 7  # ordered by id
    assert ClassTable.from_json(other.to_dict(), "x") == other
    assert ClassTable.from_json(CITYSCAPES.to_dict(), "x") == CITYSCAPES
    assert CITYSCAPES.names == CLASS_NAMES and (CITYSCAPES.palette == PALETTE).all()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"classes": []}, "2 to 255 classes"),
        ([{"id": 0, "name": "a", "color": [0, 0, 0]}, {"id": 2, "name": "b", "color": [0, 0, 0]}], "class ids"),
        ([{"id": 0, "name": "a", "color": [0, 0, 0]}, {"id": 1, "name": "a", "color": [0, 0, 0]}], "repeat"),
        ([{"id": 0, "name": "a", "color": [0, 0, 300]}, {"id": 1, "name": "b", "color": [0, 0, 0]}], "color"),
        ([{"id": 0, "name": "a"}, {"id": 1, "name": "b", "color": [0, 0, 0]}], "missing keys ['color']"),
        ({"classes": list(FOLDER_CLASSES), "ignore": 3}, "ignore value"),
        ({"classes": list(FOLDER_CLASSES), "void": 3}, "keys"),
        ("road", "expected a list"),
    ],
)
def test_a_malformed_class_table_is_one_line_naming_the_file(tmp_path, value, problem):
    make_folder(tmp_path, n=1)
    (tmp_path / "classes.json").write_text(json.dumps(value))
    with pytest.raises(DiffsegError) as err:
        open_dataset("folder", root=tmp_path, split="train")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "classes.json") in msg and problem in msg, msg


def test_classes_json_that_is_not_json(tmp_path):
    make_folder(tmp_path, n=1)
    (tmp_path / "classes.json").write_text("[{")
    with pytest.raises(DiffsegError, match="not readable JSON"):
        dataset_classes("folder", tmp_path)


@pytest.mark.parametrize("ignore", [255, 9])
def test_folder_dataset_reads_its_class_ids_and_maps_its_ignore_to_255(tmp_path, ignore):
    want = make_folder(tmp_path, n=3, size=(40, 24), ignore=ignore, suffix=".jpg")
    ds = open_dataset("folder", root=tmp_path, split="train")
    assert ds.ids == sorted(want) and ds.classes.num_classes == 5 and ds.classes.ignore == ignore
    for i, sid in enumerate(ds.ids):
        s = ds.load(i)
        assert s.image.shape == (24, 40, 3)
        np.testing.assert_array_equal(s.label, want[sid])
    assert dataset_classes("folder", tmp_path) == ds.classes


def test_folder_dataset_bad_samples_are_data_errors_naming_the_file(tmp_path):
    make_folder(tmp_path, n=3, size=(32, 32))
    bad = tmp_path / "labels" / "train" / "field_000.png"
    save_grey(bad, np.full((32, 32), 5))  # id 5: not in the 5-class table
    save_grey(tmp_path / "labels" / "train" / "field_001.png", np.zeros((16, 32)))  # size mismatch
    (tmp_path / "labels" / "train" / "field_002.png").unlink()
    ds = open_dataset("folder", root=tmp_path, split="train")
    problems = [ds.check(i) for i in range(3)]
    assert "values {5} outside the class ids 0..4 and ignore 255" in problems[0][0] and str(bad) in problems[0][0]
    assert "differs from image size" in problems[1][0]
    assert "missing label" in problems[2][0]
    with pytest.raises(DataError):
        ds.load(0)


def test_folder_dataset_needs_its_split_folder_and_classes_json(tmp_path):
    make_folder(tmp_path, n=1)
    with pytest.raises(DiffsegError, match="images/val"):
        open_dataset("folder", root=tmp_path, split="val")
    (tmp_path / "classes.json").unlink()
    with pytest.raises(DiffsegError, match="classes.json not found"):
        open_dataset("folder", root=tmp_path, split="train")


def test_a_built_in_dataset_keeps_cityscapes_classes(tmp_path):
    assert open_dataset("demo", demo_count=1).classes is CITYSCAPES
    assert dataset_classes("gtav", tmp_path / "absent") is CITYSCAPES  # no disk access


def _plugin_entry_points(monkeypatch, adapter, name="mine"):
    ep = metadata.EntryPoint(name=name, value="mine_pkg:adapter", group="diffseg.datasets")
    monkeypatch.setattr(metadata.EntryPoint, "load", lambda self: adapter)
    real = metadata.entry_points

    def fake(**kw):
        return metadata.EntryPoints([ep]) if kw.get("group") == "diffseg.datasets" else real(**kw)

    monkeypatch.setattr(metadata, "entry_points", fake)


def test_a_plugin_adapter_registers_through_the_entry_point_group(tmp_path, monkeypatch):
    make_folder(tmp_path, n=2, size=(32, 32))  # its files; the plugin reads train-id labels its own way
    table = ClassTable.from_json(list(FOLDER_CLASSES), "mine")

    def list_entries(root, split, opts):
        images = sorted((root / "images" / split).glob("*.png"))
        labels = lambda p: ((root / "labels" / split / p.name, read_train_id_label),)  # noqa: E731
        return [Entry(id=p.stem, image=p, labels=labels(p)) for p in images], {"plugin": "mine"}

    adapter = types.SimpleNamespace(list_entries=list_entries, class_table=lambda root: table)
    _plugin_entry_points(monkeypatch, adapter)
    ds = open_dataset("mine", root=tmp_path, split="train")
    assert len(ds) == 2 and ds.classes == table and ds.info == {"plugin": "mine"}
    assert dataset_classes("mine", tmp_path) == table
    with pytest.raises(DiffsegError, match="unknown dataset 'other'.*mine"):
        open_dataset("other", root=tmp_path)


def test_a_broken_plugin_is_one_line(monkeypatch, tmp_path):
    _plugin_entry_points(monkeypatch, types.SimpleNamespace())
    with pytest.raises(DiffsegError, match="plugin 'mine' .* has no list_entries"):
        open_dataset("mine", root=tmp_path)


def test_the_cache_record_carries_a_custom_table_and_keeps_the_default_record_as_written():
    plain = DatasetRecord(name="gtav", split="train")
    assert "classes" not in plain.to_dict() and plain.class_table is CITYSCAPES
    table = ClassTable.from_json(list(FOLDER_CLASSES), "x")
    rec = DatasetRecord(name="folder", split="train", label_space=CUSTOM_SPACE, classes=table.to_dict())
    again = DatasetRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec and again.class_table == table
    with pytest.raises(DiffsegError, match="needs classes"):
        DatasetRecord(name="folder", split="train", label_space=CUSTOM_SPACE)


def test_prompts_name_a_custom_table_by_its_prompt_words():
    table = ClassTable.from_json(list(FOLDER_CLASSES), "x")
    assert prompts.class_prompt(1, None, table) == "A high quality photo; rows of crops"
    assert prompts.uncond_prompt("classes", (0, 2), table) == "A high quality photo; background, weed"
    assert prompts.class_prompt(0) == prompts.TEMPLATE.format(
        name="road", description=prompts.DEFAULT_DESCRIPTIONS["road"]
    )

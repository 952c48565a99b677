"""The Fashion-MNIST canvas dataset (jaxdl.data.canvas): invariants of generated canvases (boxes inside the canvas
and equal to the tight box of each instance mask, objects from the right split, partial occlusion only), the
TFDS builder + COCO annotation file read by pycocotools, and bad input failing by name."""

import json
import os

import numpy as np
import pytest
from offline_data import require_fashion_mnist

from jaxdl.data import canvas, fashion_mnist


def _split(split: str):
    folder = fashion_mnist.raw_dir()
    images_file, labels_file = fashion_mnist.FILES[split]
    return (fashion_mnist.read_idx(os.path.join(folder, f)) for f in (images_file, labels_file))


def test_canvas_invariants():
    require_fashion_mnist()
    images, labels = _split("test")
    images, labels = images[:500], labels[:500]
    examples = [e for _, e in canvas.make_split(images, labels, 60, seed=3)]
    counts = []
    for e in examples:
        n = e["num_objects"]
        counts.append(n)
        assert 1 <= n <= canvas.MAX_OBJECTS
        assert e["image"].shape == (canvas.SIZE, canvas.SIZE, 1) and e["image"].dtype == np.uint8
        assert (e["label"][:n] >= 0).all() and (e["label"][n:] == -1).all() and (e["boxes"][n:] == 0).all()
        assert set(np.unique(e["instances"])) <= set(range(n + 1))
        for k in range(n):
            ys, xs = np.nonzero(e["instances"] == k + 1)
            assert len(ys) > 0, "every object stays visible"
            np.testing.assert_array_equal(e["boxes"][k], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        b = e["boxes"][:n]
        assert (b >= 0).all() and (b <= canvas.SIZE).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        # the object pixels are the source image's pixels: brighter than the dimmed background on average
        obj = e["instances"] > 0
        assert e["image"][..., 0][obj].mean() > e["image"][..., 0][~obj].mean()
    assert set(counts) == set(range(1, canvas.MAX_OBJECTS + 1))  # 1..6 objects all occur
    for e in examples:
        real = e["source"] >= 0
        np.testing.assert_array_equal(labels[e["source"][real]], e["label"][real])
    # determinism: same (seed, index) -> same bytes
    again = next(canvas.make_split(images, labels, 1, seed=3))[1]
    np.testing.assert_array_equal(again["image"], examples[0]["image"])
    # the semantic map (segmentation labels) agrees with the instance masks and classes
    semantic = canvas.semantic(np.stack([e["instances"] for e in examples]), np.stack([e["label"] for e in examples]))
    for e, s in zip(examples, semantic, strict=True):
        expected = np.where(e["instances"] > 0, e["label"][np.maximum(e["instances"].astype(int) - 1, 0)] + 1, 0)
        np.testing.assert_array_equal(s, expected)


def test_builder_and_coco_file(tmp_path, monkeypatch):
    require_fashion_mnist()
    from pycocotools.coco import COCO

    from jaxdl.data import registry

    monkeypatch.setattr(canvas, "TRAIN_SIZE", 12)
    monkeypatch.setattr(canvas, "TEST_SIZE", 8)
    info = registry.info("canvas", str(tmp_path))
    assert info["input_shape"] == (64, 64, 1) and info["num_classes"] == 10
    assert info["splits"] == {"train": 12, "test": 8}
    path = canvas.coco_annotations("canvas", "test", str(tmp_path))
    coco = COCO(path)
    source = registry.load("canvas", "test", str(tmp_path))
    batch = registry.preprocess("canvas", canvas_read(source))
    assert batch["input"].shape == (8, 64, 64, 1) and batch["input"].min() >= -1 and batch["input"].max() <= 1
    assert sorted(coco.getImgIds()) == sorted(batch["image_id"].tolist())
    for i, image_id in enumerate(batch["image_id"]):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[int(image_id)]))
        real = batch["label"][i] >= 0
        assert len(anns) == real.sum()
        for a, box, c in zip(anns, batch["boxes"][i][real], batch["label"][i][real], strict=True):
            assert a["category_id"] == c + 1
            np.testing.assert_allclose(a["bbox"], [box[0], box[1], box[2] - box[0], box[3] - box[1]])
            assert coco.annToMask(a).sum() == a["area"]  # the RLE decodes to the visible pixels
    # objects come from their own split: every object's class is the class of its source image in that split
    for split in ("train", "test"):
        raw = canvas_read(registry.load("canvas", split, str(tmp_path)))
        _, split_labels = _split(split)
        real = raw["source"] >= 0
        np.testing.assert_array_equal((raw["label"] >= 0), real)
        assert real.sum() >= 8
        np.testing.assert_array_equal(split_labels[raw["source"][real]], raw["label"][real])
    seg = registry.preprocess("canvas_seg", canvas_read(source))
    assert seg["label"].shape == (8, 64, 64) and seg["label"].max() <= 10


def canvas_read(source):
    from jaxdl.data.memory import read

    return read(source, range(len(source)))


def test_bad_input_errors(tmp_path):
    image = np.zeros((64, 64, 1), np.uint8)
    with pytest.raises(ValueError, match="no object"):
        canvas.check_example(image, np.zeros((6, 4)), np.full(6, -1))
    with pytest.raises(ValueError, match="image is empty"):
        canvas.check_example(np.zeros((0, 0, 1)), np.zeros((6, 4)), np.zeros(6))
    with pytest.raises(ValueError, match="row 0 has x2 < x1"):
        canvas.check_example(image, np.array([[10, 0, 5, 5]]), np.array([1]))
    good = {
        "images": [{"id": 1, "width": 64, "height": 64}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}],
    }
    canvas.check_coco(good)
    bad = json.loads(json.dumps(good))
    bad["annotations"][0]["category_id"] = 42
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bad.json: annotation 1 has unknown category_id 42"):
        canvas.load_coco(str(path))
    bad = json.loads(json.dumps(good))
    bad["annotations"][0]["image_id"] = 7
    with pytest.raises(ValueError, match="unknown image_id 7"):
        canvas.check_coco(bad)
    bad = json.loads(json.dumps(good))
    bad["annotations"][0]["bbox"] = [5, 0, -2, 5]
    with pytest.raises(ValueError, match="x2 < x1"):
        canvas.check_coco(bad)
    bad = json.loads(json.dumps(good))
    bad["images"][0]["width"] = 0
    with pytest.raises(ValueError, match="image 1 is empty"):
        canvas.check_coco(bad)

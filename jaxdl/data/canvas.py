"""Fashion-MNIST canvases: a detection / segmentation dataset built from real Fashion-MNIST objects (Debian's
`dataset-fashion-mnist`, read by jaxdl.data.fashion_mnist) pasted on larger cluttered canvases.

Each example is a `SIZE`x`SIZE` grayscale canvas with 1..`MAX_OBJECTS` objects:
- background: a 2x2 mosaic of texture tiles, each a random 14x14 crop of another Fashion-MNIST image of the same
  split, upscaled to a tile and dimmed to at most `BACKGROUND_CONTRAST` (clutter made of garment fragments, so a
  detector must tell whole objects from pieces);
- objects: a random image of the split, rescaled to a random side in [`MIN_SIDE`, `MAX_SIDE`] (bilinear,
  scipy.ndimage.zoom), its silhouette = pixels > `SILHOUETTE` of full scale, pasted at a random position; later
  objects occlude earlier ones. A placement is kept only if every earlier object keeps >= `MIN_VISIBLE` of its
  pixels visible (partial occlusion, never total); after `TRIES` failed placements the canvas keeps what it has.
Annotations are modal (what is visible): `instances` uint8 [SIZE, SIZE] holds 0 on background and k+1 on the
visible pixels of object k; `boxes` float32 [MAX_OBJECTS, 4] are (x1, y1, x2, y2) in pixel-edge coordinates, the
tight box of each object's visible pixels (x2 = last column + 1), zeros on padding; `label` int [MAX_OBJECTS] the
Fashion-MNIST class (-1 on padding); `source` int32 [MAX_OBJECTS] the index of each object's image in its
Fashion-MNIST split (-1 on padding; provenance); `num_objects`, `image_id` (= index in the split + 1, the COCO image
id).
Train canvases use only train images (objects and textures), test canvases only test images.

Splits: train `TRAIN_SIZE`, test `TEST_SIZE`; generation seeds fixed per split (`SEEDS`), so a rebuild gives the
same bytes. COCO-format annotations (`instances_<split>.json`: images, categories with id = class + 1,
annotations with bbox [x, y, w, h], area = visible pixels, RLE segmentation) are written next to the split's
array_record files by `coco_annotations` (on first use, from the stored split) so pycocotools reads them.

Registry names: `canvas` (detection: `preprocess`) and `canvas_seg` (semantic segmentation: `seg_preprocess`).
Bad input raises ValueError naming it: a box with x2 < x1 or y2 < y1, an example with no object, an annotation file
with an unknown category or image id (`check_coco`).
"""

import fcntl
import json
import os

import numpy as np
import scipy.ndimage
import tensorflow_datasets as tfds

from jaxdl.data import fashion_mnist

SIZE = 64
MAX_OBJECTS = 6
MIN_SIDE, MAX_SIDE = 16, 40
SILHOUETTE = 0.15  # object pixels: intensity > 15 % of full scale after rescaling
MIN_VISIBLE = 0.5  # every object keeps at least half of its pixels visible
BACKGROUND_CONTRAST = 0.45
TRIES = 20
TRAIN_SIZE, TEST_SIZE = 8000, 1000
SEEDS = {"train": 20, "test": 21}
NAMES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


# ----------------------------------------------------------------------------------------- validation
def check_boxes(boxes: np.ndarray, what: str = "boxes", size: int | None = None) -> None:
    """ValueError naming `what` and the first bad row unless `boxes` [..., 4] are (x1, y1, x2, y2) with x1 <= x2,
    y1 <= y2, finite, and (given `size`) inside [0, size]."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if b.size and not np.isfinite(b).all():
        raise ValueError(f"{what}: row {int(np.argwhere(~np.isfinite(b))[0, 0])} is not finite: {b.tolist()}")
    for name, lo, hi in (("x2 < x1", 0, 2), ("y2 < y1", 1, 3)):
        bad = np.flatnonzero(b[:, hi] < b[:, lo])
        if bad.size:
            raise ValueError(f"{what}: row {int(bad[0])} has {name}: {b[bad[0]].tolist()} (expected x1, y1, x2, y2)")
    if size is not None and b.size and (b.min() < 0 or b.max() > size):
        row = int(np.argwhere((b < 0) | (b > size))[0, 0])
        raise ValueError(f"{what}: row {row} {b[row].tolist()} is outside the {size}x{size} canvas")


def check_example(image: np.ndarray, boxes: np.ndarray, label: np.ndarray, what: str = "example") -> None:
    """ValueError unless an example has a non-empty image, at least one object, valid boxes and classes."""
    if np.asarray(image).size == 0:
        raise ValueError(f"{what}: the image is empty (shape {np.shape(image)})")
    label = np.asarray(label)
    real = label >= 0
    if not real.any():
        raise ValueError(f"{what}: the image has no object (every label is -1)")
    if (label >= len(NAMES)).any():
        raise ValueError(f"{what}: class {int(label.max())} is not one of the {len(NAMES)} Fashion-MNIST classes")
    check_boxes(np.asarray(boxes)[real], f"{what} boxes", size=np.shape(image)[0])


# ----------------------------------------------------------------------------------------- generation
def _background(rng: np.random.Generator, pool: np.ndarray, size: int) -> np.ndarray:
    """float32 [size, size] in [0, BACKGROUND_CONTRAST]: 2x2 tiles of upscaled 14x14 crops of random pool images."""
    tile = size // 2
    canvas = np.zeros((size, size), np.float32)
    for ty in range(2):
        for tx in range(2):
            img = pool[rng.integers(len(pool))].astype(np.float32) / 255.0
            y, x = rng.integers(0, 28 - 14 + 1, size=2)
            crop = scipy.ndimage.zoom(img[y : y + 14, x : x + 14], tile / 14, order=1)
            canvas[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile] = crop[:tile, :tile]
    return np.clip(canvas, 0.0, 1.0) * BACKGROUND_CONTRAST


def make_canvas(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, size: int = SIZE) -> dict:
    """One canvas from `images` uint8 [n, 28, 28] / `labels` int [n] (see the module docstring for the recipe).

    Returns image uint8 [size, size, 1], instances uint8 [size, size], boxes float32 [MAX_OBJECTS, 4], label
    int64 [MAX_OBJECTS] (-1 padding), source int32 [MAX_OBJECTS] (image index, -1 padding), num_objects int."""
    canvas = _background(rng, images, size)
    inst = np.zeros((size, size), np.uint8)
    full_area: list[int] = []
    classes: list[int] = []
    sources: list[int] = []
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    tries = 0
    while len(classes) < wanted and tries < TRIES:
        tries += 1
        i = int(rng.integers(len(images)))
        side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
        obj = np.clip(scipy.ndimage.zoom(images[i].astype(np.float32) / 255.0, side / 28, order=1), 0, 1)
        side = obj.shape[0]
        sil = obj > SILHOUETTE
        if sil.sum() == 0:
            continue
        y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        trial = inst.copy()
        trial[y : y + side, x : x + side][sil] = len(classes) + 1
        visible = np.bincount(trial.ravel(), minlength=len(classes) + 2)
        if any(visible[k + 1] < MIN_VISIBLE * full_area[k] for k in range(len(classes))):
            continue  # would hide too much of an earlier object
        inst = trial
        canvas[y : y + side, x : x + side][sil] = obj[sil]
        full_area.append(int(sil.sum()))
        classes.append(int(labels[i]))
        sources.append(i)
    if not classes:
        raise ValueError(f"no object could be placed in {TRIES} tries (side range [{MIN_SIDE}, {MAX_SIDE}])")
    boxes = np.zeros((MAX_OBJECTS, 4), np.float32)
    for k in range(len(classes)):
        ys, xs = np.nonzero(inst == k + 1)
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    label = np.full(MAX_OBJECTS, -1, np.int64)
    label[: len(classes)] = classes
    source = np.full(MAX_OBJECTS, -1, np.int32)
    source[: len(sources)] = sources
    image = np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8)[..., None]
    return {
        "image": image,
        "instances": inst,
        "boxes": boxes,
        "label": label,
        "source": source,
        "num_objects": len(classes),
    }


def make_split(images: np.ndarray, labels: np.ndarray, count: int, seed: int, size: int = SIZE):
    """Yields `count` canvases (with `image_id` = index + 1), canvas i drawn from generator (seed, i)."""
    for i in range(count):
        ex = make_canvas(np.random.default_rng([seed, i]), images, labels, size)
        check_example(ex["image"], ex["boxes"], ex["label"], f"canvas {i}")
        yield i, dict(ex, image_id=i + 1)


class Canvas(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "`source` feature (provenance of each object)."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(SIZE, SIZE, 1), dtype=np.uint8),
                    "instances": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.uint8),
                    "boxes": tfds.features.Tensor(shape=(MAX_OBJECTS, 4), dtype=np.float32),
                    "label": tfds.features.Sequence(tfds.features.ClassLabel(names=NAMES), length=MAX_OBJECTS),
                    "source": tfds.features.Tensor(shape=(MAX_OBJECTS,), dtype=np.int32),
                    "num_objects": tfds.features.Scalar(dtype=np.int32),
                    "image_id": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        folder = fashion_mnist.raw_dir()
        return {split: self._generate_examples(folder, split) for split in fashion_mnist.FILES}

    def _generate_examples(self, folder: str, split: str):
        images_file, labels_file = fashion_mnist.FILES[split]
        images = fashion_mnist.read_idx(os.path.join(folder, images_file))
        labels = fashion_mnist.read_idx(os.path.join(folder, labels_file))
        size = {"train": TRAIN_SIZE, "test": TEST_SIZE}[split]
        yield from make_split(images, labels, size, SEEDS[split])


def _scaled(examples: dict) -> np.ndarray:
    return examples["image"].astype(np.float32) / 127.5 - 1.0


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": float32 [b, SIZE, SIZE, 1] in [-1, 1], "label": int32 [b, MAX_OBJECTS]
    (-1 padding), "boxes": float32 [b, MAX_OBJECTS, 4] (x1, y1, x2, y2 pixels), "image_id": int32 [b]}."""
    return {
        "input": _scaled(examples),
        "label": examples["label"].astype(np.int32),
        "boxes": examples["boxes"].astype(np.float32),
        "image_id": examples["image_id"].astype(np.int32),
    }


def semantic(instances: np.ndarray, label: np.ndarray) -> np.ndarray:
    """int32 [b, H, W] semantic map: 0 background, class + 1 on each object's visible pixels."""
    lut = np.concatenate([np.zeros((len(label), 1), np.int64), np.asarray(label, np.int64) + 1], axis=1)
    return (
        np.take_along_axis(lut, instances.reshape(len(label), -1).astype(np.int64), axis=1)
        .reshape(instances.shape)
        .astype(np.int32)
    )


def seg_preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input": float32 [b, SIZE, SIZE, 1], "label": int32 [b, SIZE, SIZE] with 0 =
    background and c + 1 = Fashion-MNIST class c (so a segmenter has len(NAMES) + 1 outputs)}."""
    return {"input": _scaled(examples), "label": semantic(examples["instances"], examples["label"])}


# ----------------------------------------------------------------------------------------- COCO annotations
def to_coco(examples: dict[str, np.ndarray]) -> dict:
    """Stacked raw examples (image, instances, boxes, label, image_id) -> a COCO instances dict (bbox
    [x, y, w, h], area = visible pixels, RLE segmentation, category id = class + 1)."""
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for j in range(len(examples["image_id"])):
        image_id = int(examples["image_id"][j])
        h, w = examples["image"][j].shape[:2]
        check_example(examples["image"][j], examples["boxes"][j], examples["label"][j], f"image {image_id}")
        images.append({"id": image_id, "width": int(w), "height": int(h), "file_name": f"{image_id}.png"})
        for k, c in enumerate(examples["label"][j]):
            if c < 0:
                continue
            m = np.asfortranarray((examples["instances"][j] == k + 1).astype(np.uint8))
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = (float(v) for v in examples["boxes"][j][k])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(c) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(m.sum()),
                    "segmentation": rle,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n, "supercategory": "fashion"} for i, n in enumerate(NAMES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def check_coco(coco: dict, what: str = "annotations") -> None:
    """ValueError naming the annotation unless every annotation has a known category and image id, and a bbox
    [x, y, w, h] with w, h >= 0; and every image has a positive width and height."""
    cats = {c["id"] for c in coco.get("categories", [])}
    images = {}
    for im in coco.get("images", []):
        if im.get("width", 0) <= 0 or im.get("height", 0) <= 0:
            raise ValueError(f"{what}: image {im.get('id')} is empty ({im.get('width')}x{im.get('height')} pixels)")
        images[im["id"]] = im
    if not images:
        raise ValueError(f"{what}: no images")
    for a in coco.get("annotations", []):
        if a["category_id"] not in cats:
            raise ValueError(
                f"{what}: annotation {a.get('id')} has unknown category_id {a['category_id']} (known: {sorted(cats)})"
            )
        if a["image_id"] not in images:
            raise ValueError(f"{what}: annotation {a.get('id')} refers to unknown image_id {a['image_id']}")
        x, y, w, h = a["bbox"]
        check_boxes(np.array([x, y, x + w, y + h]), f"{what}: annotation {a.get('id')} bbox [x, y, w, h]")


def load_coco(path: str) -> dict:
    """A COCO instances JSON file, checked by `check_coco` (errors name the file)."""
    with open(path) as f:
        coco = json.load(f)
    check_coco(coco, path)
    return coco


def coco_annotations(name: str, split: str, data_dir: str | None = None) -> str:
    """Path of the COCO annotation JSON of dataset `name` (a canvas registry name) split `split`, next to the
    split's array_record files; written from the stored split on first use (a file lock serializes writers)."""
    from jaxdl.data import registry
    from jaxdl.data.memory import read

    b = registry.builder(name, data_dir)
    path = os.path.join(str(b.data_dir), f"instances_{split}.json")
    if os.path.exists(path):
        return path
    source = registry.load(name, split, data_dir)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            coco = to_coco(read(source, range(len(source)), what=f"dataset {name!r} split {split!r}"))
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(coco, f)
            os.replace(tmp, path)
    return path

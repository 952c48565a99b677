"""Fashion-MNIST image–text pairs with held-out classes (TFDS array_record, built offline from Debian's
`dataset-fashion-mnist` idx files and `wordnet-base` glosses).

Each image gets one caption drawn (seeded, per split) from its class's captions (`jaxdl.data.captions`: 8
templates over 3 names/synonyms, 3 hand-written attributes and 1–2 WordNet glosses per class; the synonym and
attribute lists are ours, the glosses WordNet's). HELD_OUT = trouser, pullover, ankle boot (ids 1, 2, 9): their
images are absent from `train`, and no `train` caption mentions any of their names or synonyms (a seen class's
caption that would, e.g. WordNet's T-shirt gloss "a close-fitting pullover shirt", is dropped). Each held-out
class has seen neighbours through attributes (legs: dress; upper body / sleeves: T-shirt, coat, shirt; feet:
sandal, sneaker), which is what zero-shot transfer can use.

Splits:
    train   the 42,000 Fashion-MNIST train images of the 7 seen classes, seen-safe captions
    probe   the first 10,000 Fashion-MNIST train images, all 10 classes (for linear probes; never trained on)
    test    the 10,000 test images, all classes, captions from every class's full caption set
Examples: `image` uint8 [28, 28, 1], `label` int in [0, 10), `caption` uint8 [MAX_LEN] (UTF-8 bytes, 0-padded).
`preprocess` -> {"input": float32 [b, 28, 28, 1] normalized as fashion_mnist, "label": int32 [b], "text": int32
[b, MAX_LEN]}.
"""

import os

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data import captions as cap
from jaxdl.data import fashion_mnist

MAX_LEN = 128
PROBE_SIZE = 10_000
CLASSES = (
    cap.ClassText(
        ("t-shirt", "top", "tee"),
        ("with short sleeves", "worn on the upper body", "made of light cotton"),
        (("t-shirt", 1),),
    ),
    cap.ClassText(
        ("trousers", "pants", "slacks"),
        ("worn on the legs", "covering each leg", "with a waistband"),
        (("trouser", 1),),
    ),
    cap.ClassText(
        ("pullover", "sweater", "jumper"),
        ("with long sleeves", "worn on the upper body", "knitted from wool"),
        (("sweater", 1), ("pullover", 1)),
    ),
    cap.ClassText(
        ("dress", "frock", "gown"),
        ("worn by women", "covering the body and legs", "in one piece"),
        (("dress", 1),),
    ),
    cap.ClassText(
        ("coat", "jacket", "overcoat"),
        ("with long sleeves", "worn outdoors over other clothes", "worn on the upper body"),
        (("coat", 1),),
    ),
    cap.ClassText(
        ("sandal", "flip-flop", "strappy shoe"),
        ("worn on the feet", "open at the toes", "with thin straps"),
        (("sandal", 1),),
    ),
    cap.ClassText(
        ("shirt", "blouse", "button-down shirt"),
        ("with a collar and buttons", "worn on the upper body", "with long sleeves"),
        (("shirt", 1),),
    ),
    cap.ClassText(
        ("sneaker", "trainer", "running shoe"),
        ("worn on the feet", "with laces", "low-cut footwear"),
        (("sneaker", 1),),
    ),
    cap.ClassText(
        ("bag", "handbag", "purse"),
        ("carried in the hand", "with a handle", "used to hold things"),
        (("handbag", 1), ("bag", 1)),
    ),
    cap.ClassText(
        ("ankle boot", "boot", "bootee"),
        ("worn on the feet", "covering the ankle", "with a heel"),
        (("boot", 1),),
    ),
)
NAMES = tuple(c.names[0] for c in CLASSES)
HELD_OUT = (1, 2, 9)
SEEN = tuple(k for k in range(len(CLASSES)) if k not in HELD_OUT)
SEEDS = {"train": 0, "probe": 1, "test": 2}


def forbidden_words() -> tuple[str, ...]:
    """Every name and synonym of the held-out classes: no training caption may mention one."""
    return tuple(n for k in HELD_OUT for n in CLASSES[k].names)


def caption_sets(split: str) -> dict[int, list[str]]:
    """class id -> the captions images of `split` draw from: the seen classes' held-out-safe captions for
    `train`, every class's full set otherwise."""
    if split == "train":
        return {k: cap.safe_captions(CLASSES[k], forbidden_words()) for k in SEEN}
    return {k: cap.class_captions(CLASSES[k]) for k in range(len(CLASSES))}


PROMPT_SETS = ("full", "names", "descriptions")


def prompts(label: int, kind: str = "full") -> list[str]:
    """The zero-shot prompt ensemble of class `label`:
    - "full": all its captions (names x templates, attributes, glosses);
    - "names": the name-only templates (no attribute or gloss): name transfer alone;
    - "descriptions": its attributes and WordNet glosses without any class name ("a photo of something with
      long sleeves.", "something: <gloss>."). A held-out class's names are byte strings the text tower never
      saw in training; its descriptions are made of words it did see."""
    if kind not in PROMPT_SETS:
        raise ValueError(f"prompt set {kind!r}: use one of {PROMPT_SETS}")
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"class id {label} is outside [0, {len(CLASSES)})")
    spec = CLASSES[label]
    if kind == "descriptions":
        out = [f"a photo of something {a}." for a in spec.attributes] + [f"something: {g}." for g in spec.glosses()]
        return [p for p in out if not cap.mentions(p, spec.names)]  # pullover's gloss says "a sweater that ..."
    templates = (
        cap.TEMPLATES if kind == "full" else tuple(t for t in cap.TEMPLATES if "{" not in t.replace("{name}", ""))
    )
    return cap.class_captions(spec, templates)


def split_examples(split: str, labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(indices into the Fashion-MNIST split, caption per kept example) of `split`, from the labels of its
    source (train for train/probe, test for test). Captions are drawn with a seeded generator per split."""
    if split == "train":
        idx = np.flatnonzero(np.isin(labels, SEEN))
    elif split == "probe":
        idx = np.arange(min(PROBE_SIZE, len(labels)))
    elif split == "test":
        idx = np.arange(len(labels))
    else:
        raise ValueError(f"fmnist_captions has no split {split!r}; splits: {sorted(SEEDS)}")
    sets = caption_sets(split)
    rng = np.random.default_rng(SEEDS[split])
    draws = rng.integers(0, 1 << 30, len(idx))
    texts = [sets[int(labels[i])][d % len(sets[int(labels[i])])] for i, d in zip(idx, draws, strict=True)]
    return idx, texts


class FmnistCaptions(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(NAMES)),
                    "caption": tfds.features.Tensor(shape=(MAX_LEN,), dtype=np.uint8),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        folder = fashion_mnist.raw_dir()
        cap.wordnet_dir()  # fail before generating anything if the glosses are missing
        source = {"train": "train", "probe": "train", "test": "test"}
        return {s: self._generate_examples(folder, s, *fashion_mnist.FILES[source[s]]) for s in SEEDS}

    def _generate_examples(self, folder, split, images_file, labels_file):
        images = fashion_mnist.read_idx(os.path.join(folder, images_file))
        labels = fashion_mnist.read_idx(os.path.join(folder, labels_file))
        idx, texts = split_examples(split, labels)
        tokens = cap.encode(texts, MAX_LEN)
        for j, i in enumerate(idx):
            yield int(i), {"image": images[i][..., None], "label": int(labels[i]), "caption": tokens[j]}


def preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stacked raw examples -> {"input", "label"} as fashion_mnist, plus "text" int32 [b, MAX_LEN] byte ids."""
    out = fashion_mnist.preprocess(examples)
    out["text"] = examples["caption"].astype(np.int32)
    return out

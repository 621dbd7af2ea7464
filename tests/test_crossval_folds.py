"""k-fold splits: the tutorial's get_k_fold_data without dropped rows, and scikit-learn's folds."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from rnnlab.crossval import fold_bounds, fold_indices, get_k_fold_data


def textbook_get_k_fold_data(k, i, X, y):
    """The well-known version (fold_size = n // k): the last n % k rows are never used."""
    assert k > 1
    fold_size = X.shape[0] // k
    X_train, y_train = None, None
    for j in range(k):
        idx = slice(j * fold_size, (j + 1) * fold_size)
        X_part, y_part = X[idx, :], y[idx]
        if j == i:
            X_valid, y_valid = X_part, y_part
        elif X_train is None:
            X_train, y_train = X_part, y_part
        else:
            X_train = torch.cat([X_train, X_part], 0)
            y_train = torch.cat([y_train, y_part], 0)
    return X_train, y_train, X_valid, y_valid


def rows(n):
    X = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)  # (n, 2): row r holds 2r, 2r+1
    return X, torch.arange(n)  # y[r] = r names the row


def test_get_k_fold_data_uses_every_row_where_the_textbook_version_drops_some():
    X, y = rows(11)
    k = 3
    textbook = {r for i in range(k) for r in textbook_get_k_fold_data(k, i, X, y)[3].tolist()}
    ours = [r for i in range(k) for r in get_k_fold_data(k, i, X, y)[3].tolist()]
    assert len(textbook) == 9  # rows 9 and 10 are in no fold: never trained or validated on
    assert sorted(ours) == list(range(11))  # each row validated exactly once


@pytest.mark.parametrize(("n", "k"), [(10, 2), (11, 3), (7, 7), (100, 6), (5, 4)])
def test_get_k_fold_data_fold_sizes_differ_by_at_most_one(n, k):
    X, y = rows(n)
    sizes = []
    for i in range(k):
        X_train, y_train, X_valid, y_valid = get_k_fold_data(k, i, X, y)
        assert len(X_train) + len(X_valid) == n
        assert set(y_train.tolist()).isdisjoint(y_valid.tolist())
        assert torch.equal(X_valid[:, 0], 2 * y_valid.float())  # X and y rows stay together
        assert torch.equal(X_train[:, 0], 2 * y_train.float())
        sizes.append(len(X_valid))
    assert max(sizes) - min(sizes) <= 1
    assert sizes == [len(part) for part in np.array_split(np.arange(n), k)]


def test_get_k_fold_data_validates_on_the_folds_of_unshuffled_kfold():
    X, y = rows(13)
    for i, (train, valid) in enumerate(KFold(n_splits=4).split(X.numpy())):
        _, y_train, _, y_valid = get_k_fold_data(4, i, X, y)
        assert y_valid.tolist() == valid.tolist()
        assert y_train.tolist() == train.tolist()  # in order, fold i cut out


def test_get_k_fold_data_returns_numpy_for_numpy():
    X, y = np.arange(20).reshape(10, 2), np.arange(10)
    X_train, y_train, X_valid, y_valid = get_k_fold_data(3, 1, X, y)
    assert all(isinstance(a, np.ndarray) for a in (X_train, y_train, X_valid, y_valid))
    assert y_valid.tolist() == [4, 5, 6]
    assert y_train.tolist() == [0, 1, 2, 3, 7, 8, 9]


@pytest.mark.parametrize(
    ("k", "i", "n", "message"),
    [
        (1, 0, 10, "needs k >= 2 folds, got k=1"),
        (11, 0, 10, "k=11 folds need at least 11 samples, got 10"),
        (3, 3, 10, "fold i must be in 0..2 for k=3, got 3"),
        (3, -1, 10, "fold i must be in 0..2 for k=3, got -1"),
    ],
)
def test_get_k_fold_data_names_a_bad_k_or_i(k, i, n, message):
    X, y = rows(n)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_k_fold_data(k, i, X, y)


def test_get_k_fold_data_refuses_x_and_y_of_different_lengths():
    X, y = rows(10)
    with pytest.raises(ValueError, match="same number of rows, got 10 and 9"):
        get_k_fold_data(2, 0, X, y[:9])


def test_fold_bounds_are_contiguous_and_put_the_extra_rows_first():
    assert fold_bounds(11, 3) == [(0, 4), (4, 8), (8, 11)]


LABELS = np.repeat(np.arange(3), [30, 20, 10])  # (60,) classes in ratio 3:2:1, sorted


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_folds_are_disjoint_and_cover_every_index(stratified, shuffle):
    n, k = len(LABELS), 7
    splits = fold_indices(n, k, labels=LABELS if stratified else None, shuffle=shuffle, seed=3)
    assert len(splits) == k
    valid = np.concatenate([v for _, v in splits])
    assert sorted(valid.tolist()) == list(range(n))  # disjoint and covering
    for train, v in splits:
        assert train.dtype == v.dtype == np.int64
        assert sorted(np.concatenate([train, v]).tolist()) == list(range(n))
    sizes = [len(v) for _, v in splits]
    assert max(sizes) - min(sizes) <= 1


def test_stratified_folds_keep_the_class_ratios():
    splits = fold_indices(len(LABELS), 5, labels=LABELS, shuffle=True, seed=0)
    for train, valid in splits:
        assert np.bincount(LABELS[valid]).tolist() == [6, 4, 2]  # 3:2:1, as in the whole
        assert np.bincount(LABELS[train]).tolist() == [24, 16, 8]
    plain = fold_indices(len(LABELS), 5, shuffle=False)  # sorted labels: folds of one class
    assert np.bincount(LABELS[plain[0][1]], minlength=3).tolist() == [12, 0, 0]


def test_the_same_seed_gives_the_same_folds_and_another_seed_others():
    def valid_sets(seed):
        return [v.tolist() for _, v in fold_indices(60, 4, labels=LABELS, seed=seed)]

    assert valid_sets(5) == valid_sets(5)
    assert valid_sets(5) != valid_sets(6)
    unshuffled = [v.tolist() for _, v in fold_indices(60, 4, shuffle=False, seed=9)]
    assert unshuffled[0] == list(range(15))  # without shuffling the seed plays no part


def test_fold_indices_names_bad_labels_and_seeds():
    with pytest.raises(
        ValueError, match=r"labels must have shape \(60,\) to stratify, got \(59,\)"
    ):
        fold_indices(60, 3, labels=LABELS[:59])
    with pytest.raises(ValueError, match=r"seed must be in 0..2\*\*32-1.*got -1"):
        fold_indices(60, 3, seed=-1)
    with pytest.raises(ValueError, match="k=3 folds need at least 3 samples, got 2"):
        fold_indices(2, 3)

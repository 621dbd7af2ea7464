"""Splitting n samples into k folds: the tutorial's get_k_fold_data, and seeded, stratified splits.

`get_k_fold_data` keeps the textbook signature but drops no rows: fold sizes differ by at most
one (numpy.array_split's boundaries, which are also scikit-learn's KFold's without shuffling).
`fold_indices` is a thin layer over scikit-learn's KFold and StratifiedKFold, not a rewrite.
Nothing here trains anything.
"""

from __future__ import annotations

import numpy as np
import torch


def fold_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """(start, stop) of each of `k` contiguous folds over `n` rows: the first n % k folds hold
    one row more than the others, so every row is in exactly one fold."""
    _check_k(k, n)
    size, extra = divmod(n, k)
    bounds, start = [], 0
    for i in range(k):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def get_k_fold_data(k: int, i: int, X, y):
    """The tutorial's k-fold split: fold `i` of `k` for validation, the other k-1 for training.

    Unlike the textbook version (fold_size = n // k, remainder dropped) every row lands in
    exactly one validation fold. Folds are contiguous and in order; shuffle beforehand, or use
    `fold_indices`, for random folds.

    **Arguments:** `X` (n, ...) and `y` (n, ...): tensors or numpy arrays with the same first
    dimension.

    **Returns:** (X_train, y_train, X_valid, y_valid), of the inputs' type; the training rows
    keep their order, with fold i cut out.
    """
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same number of rows, got {len(X)} and {len(y)}")
    bounds = fold_bounds(len(X), k)
    if not 0 <= i < k:
        raise ValueError(f"fold i must be in 0..{k - 1} for k={k}, got {i}")
    start, stop = bounds[i]

    def cut(a):
        kept = (a[:start], a[stop:])
        train = torch.cat(kept) if isinstance(a, torch.Tensor) else np.concatenate(kept)
        return train, a[start:stop]

    (X_train, X_valid), (y_train, y_valid) = cut(X), cut(y)
    return X_train, y_train, X_valid, y_valid


def fold_indices(
    n: int,
    k: int,
    *,
    labels=None,
    shuffle: bool = True,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, valid) index arrays of each of `k` folds over `n` samples.

    With `labels` (n,) the folds are stratified (scikit-learn's StratifiedKFold: each fold
    keeps the classes' proportions); without, plain KFold. With `shuffle` the samples are
    permuted by `seed` first (the same seed gives the same folds); without, folds are
    contiguous, as in `get_k_fold_data`. The valid arrays are disjoint and cover 0..n-1.
    """
    _check_k(k, n)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in 0..2**32-1 (scikit-learn's random_state), got {seed}")
    # Imported here, not at the top: it takes a second and more, which every worker process
    # of cross_validate would pay for nothing (folds are split once, in the parent).
    from sklearn.model_selection import KFold, StratifiedKFold

    random_state = seed if shuffle else None
    if labels is None:
        splitter = KFold(n_splits=k, shuffle=shuffle, random_state=random_state)
        splits = splitter.split(np.zeros(n))
    else:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) to stratify, got {labels.shape}")
        splitter = StratifiedKFold(n_splits=k, shuffle=shuffle, random_state=random_state)
        splits = splitter.split(np.zeros(n), labels)
    return [(train.astype(np.int64), valid.astype(np.int64)) for train, valid in splits]


def _check_k(k: int, n: int) -> None:
    if k < 2:
        raise ValueError(f"k-fold cross-validation needs k >= 2 folds, got k={k}")
    if k > n:
        raise ValueError(f"k={k} folds need at least {k} samples, got {n}")

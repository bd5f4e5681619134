"""The beat classifier: gradient-boosted trees over :mod:`ecgwatch.detection.features`, evaluated with numpy.

Trained offline (``training/beat_classifier.py``, scikit-learn's ``HistGradientBoostingClassifier``) and
shipped as plain arrays in the model artifact, so serving needs neither scikit-learn nor pickle. Each tree is
stored flat: per node its feature, threshold, children, whether a missing value goes left, and for leaves the
value that the trees' sum (plus a baseline) turns into a log-odds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

FIELDS = ("feature", "threshold", "left", "right", "leaf", "missing_left", "value", "roots")


@dataclass(frozen=True)
class Trees:
    """One binary classifier: P(class) = sigmoid(baseline + the sum of each tree's leaf value)."""

    feature: np.ndarray  # int, per node
    threshold: np.ndarray  # float: go left when x[feature] <= threshold
    left: np.ndarray  # int, child node indices (unused at leaves)
    right: np.ndarray
    leaf: np.ndarray  # bool
    missing_left: np.ndarray  # bool: where a NaN goes
    value: np.ndarray  # float, at leaves
    roots: np.ndarray  # int, the first node of each tree
    baseline: float
    names: tuple[str, ...]  # the features, in the order the trees index them

    def log_odds(self, x: np.ndarray) -> np.ndarray:
        """``(N, F)`` feature rows to ``(N,)`` log-odds, every tree at once: each step moves every row down
        every tree by one level; a leaf is its own child, so the deepest tree's depth in steps reaches all."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        left, right, depth = self._walk
        out = np.empty(len(x))
        for i, row in enumerate(x):  # one row at a time: 1-D indexing is several times cheaper than 2-D
            node = self.roots
            for _ in range(depth):
                value = row[self.feature[node]]
                go_left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
                node = np.where(go_left, left[node], right[node])
            out[i] = self.baseline + self.value[node].sum()
        return out

    @functools.cached_property
    def _walk(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Children with leaves pointing at themselves, and the deepest tree's depth."""
        own = np.arange(len(self.feature))
        left, right = np.where(self.leaf, own, self.left), np.where(self.leaf, own, self.right)
        return left, right, self._depth()

    def _depth(self) -> int:
        depth = np.zeros(len(self.feature), dtype=np.int64)
        for k in np.flatnonzero(~self.leaf):  # children come after their parents (checked at load)
            depth[self.left[k]] = depth[self.right[k]] = depth[k] + 1
        return int(depth.max(initial=0))

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.log_odds(x)))

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {f"{prefix}.{name}": np.ascontiguousarray(getattr(self, name)) for name in FIELDS}
        arrays[f"{prefix}.baseline"] = np.array([self.baseline])
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, names: tuple[str, ...]) -> Trees:
        """Rebuild from :meth:`to_arrays`; a malformed set raises ValueError saying what is wrong."""
        try:
            parts = {name: np.asarray(arrays[f"{prefix}.{name}"]) for name in (*FIELDS, "baseline")}
        except KeyError as missing:
            raise ValueError(f"classifier {prefix!r}: array {missing} is missing") from None
        trees = cls(
            feature=parts["feature"].astype(np.int64),
            threshold=parts["threshold"].astype(np.float64),
            left=parts["left"].astype(np.int64),
            right=parts["right"].astype(np.int64),
            leaf=parts["leaf"].astype(bool),
            missing_left=parts["missing_left"].astype(bool),
            value=parts["value"].astype(np.float64),
            roots=parts["roots"].astype(np.int64),
            baseline=float(parts["baseline"][0]),
            names=names,
        )
        trees.check()
        return trees

    def check(self) -> None:
        """Every index in range and every tree finite: a corrupt file fails at load, not on a beat."""
        n = len(self.feature)
        same = all(len(getattr(self, f)) == n for f in ("threshold", "left", "right", "leaf", "missing_left", "value"))
        inner = ~self.leaf
        if not same or not len(self.roots):
            raise ValueError("classifier arrays differ in length or hold no tree")
        children = np.concatenate([self.left[inner], self.right[inner], self.roots])
        if children.min(initial=0) < 0 or children.max(initial=0) >= n:
            raise ValueError("classifier node index out of range")
        if self.feature[inner].min(initial=0) < 0 or self.feature[inner].max(initial=0) >= len(self.names):
            raise ValueError("classifier feature index out of range")
        if not (np.isfinite(self.value).all() and np.isfinite(self.baseline)):
            raise ValueError("classifier holds non-finite values")
        parents = np.flatnonzero(inner)
        if (self.left[inner] <= parents).any() or (self.right[inner] <= parents).any():
            raise ValueError("classifier child before its parent: a cycle")

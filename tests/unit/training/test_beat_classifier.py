import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from ecgwatch.detection.classifier import Trees
from training.beat_classifier import export


@pytest.fixture(scope="module")
def fitted() -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4))
    x[rng.random(2000) < 0.1, 2] = np.nan  # missing values take their learnt side
    y = (x[:, 0] + np.nan_to_num(x[:, 2], nan=1.0) - 0.5 * x[:, 1] > 0.3).astype(int)
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=7, random_state=0).fit(x, y)
    return model, x


def test_exported_trees_give_scikit_learns_probabilities(fitted) -> None:
    model, x = fitted
    trees = export(model, ("a", "b", "c", "d"))
    np.testing.assert_allclose(trees.probability(x), model.predict_proba(x)[:, 1], rtol=1e-9, atol=1e-12)


def test_trees_survive_the_round_trip_through_arrays(fitted) -> None:
    model, x = fitted
    trees = export(model, ("a", "b", "c", "d"))
    again = Trees.from_arrays(trees.to_arrays("v"), "v", trees.names)
    np.testing.assert_array_equal(again.log_odds(x), trees.log_odds(x))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda a: a.pop("v.left"), "missing"),
        (lambda a: a.__setitem__("v.left", a["v.left"] + 10_000), "out of range"),
        (lambda a: a.__setitem__("v.feature", a["v.feature"] + 9), "feature index"),
        (lambda a: a.__setitem__("v.value", a["v.value"] * np.nan), "non-finite"),
        (lambda a: a.__setitem__("v.right", np.where(a["v.leaf"], 0, 0)), "cycle"),
    ],
)
def test_a_corrupt_classifier_is_refused_with_a_reason(fitted, spoil, message) -> None:
    model, _ = fitted
    arrays = export(model, ("a", "b", "c", "d")).to_arrays("v")
    spoil(arrays)
    with pytest.raises(ValueError, match=message):
        Trees.from_arrays(arrays, "v", ("a", "b", "c", "d"))

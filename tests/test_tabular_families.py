"""The tree families of regression (`gbm-tuned`, `random-forest`, `extra-trees`) on real California housing rows:
each trains, saves as skops + JSON (no pickle, only the types the loader trusts), loads and predicts the same;
categorical columns are handled per family; `gbm-tuned`'s boosting really stops early; a tree edited to point
outside its arrays is refused at load."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import DATA
from shoal.data.readers import read_table
from shoal.evaluate.regression import metric_values
from shoal.families import get_family
from shoal.families.gbm import N_ITER_NO_CHANGE
from shoal.families.gbm_tuned import MAX_ITER
from shoal.families.runtime.sklearn_predictor import MODEL_FILE, UntrustedArtifact, dump_skops, sio
from shoal.families.tabular import TRUSTED, TabularPredictor
from shoal.tasks.regression.kind import TARGET as STORED_TARGET
from shoal.tasks.regression.kind import Regression, records
from shoal.tasks.regression.spec import RegressionSpec

TARGET = "median_house_value"
HOUSING = "california_housing/housing.csv"
TREE_FAMILIES = ["gbm-tuned", "random-forest", "extra-trees"]

Rows = tuple[list[dict[str, Any]], list[float], list[dict[str, Any]], np.ndarray]


@pytest.fixture(scope="module")
def housing() -> Rows:
    """3,000 training and 1,000 test rows as the regression task types them (NaN for a missing number, None for a
    missing category; `ocean_proximity` categorical)."""
    spec = RegressionSpec(task="regression", target_column=TARGET, families=["mean"])
    clean = Regression().validate(read_table(DATA / HOUSING), spec, HOUSING, skip_invalid=False)
    frame = clean.frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, test = frame.iloc[:3000], frame.iloc[3000:4000]
    assert train["total_bedrooms"].isna().any()  # the source's missing values are in the training rows
    return records(train), train[STORED_TARGET].tolist(), records(test), test[STORED_TARGET].to_numpy()


def first_setting(name: str, rows: int) -> dict[str, Any]:
    return get_family(name).grid(rows)[0]


@pytest.mark.parametrize("name", TREE_FAMILIES)
def test_a_tree_family_trains_saves_without_pickle_loads_and_predicts(name: str, housing: Rows, tmp_path: Path) -> None:
    train_x, train_y, test_x, truth = housing
    family = get_family(name)
    predictor = family.fit(train_x, train_y, first_setting(name, len(train_x)), seed=0)
    values = predictor.predict_proba(test_x)[:, 0]
    floor = np.full(len(truth), np.mean(train_y))
    mae, floor_mae = metric_values(truth, values, "mae"), metric_values(truth, floor, "mae")
    assert mae < 0.6 * floor_mae, (mae, floor_mae)  # a real model: 3,000 rows give R² ≈ 0.7-0.8
    assert predictor.n_parameters() > 1000  # the trees' nodes are counted

    predictor.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interval.json", MODEL_FILE, "schema.json"]
    with zipfile.ZipFile(tmp_path / MODEL_FILE) as archive:
        assert not [n for n in archive.namelist() if n.endswith((".pkl", ".pickle"))]
        assert "pickle" not in archive.read("schema.json").decode().lower()
    # everything in the file is a type skops trusts by default or one the tabular loader lists, nothing else
    assert set(sio.get_untrusted_types(file=tmp_path / MODEL_FILE)) <= set(TRUSTED)
    loaded = family.load(tmp_path)
    assert np.array_equal(loaded.predict_proba(test_x), predictor.predict_proba(test_x), equal_nan=True)
    assert loaded.check_inputs(test_x[:3]) == []


@pytest.mark.parametrize("name", ["ridge", *TREE_FAMILIES])
def test_categories_are_handled_by_each_family(name: str, housing: Rows) -> None:
    """`ocean_proximity` (a string column, so categorical in the schema): ridge one-hot encodes it, the tree families
    code it as ordinals (split natively as categories by `gbm-tuned`); the category moves the prediction, and an
    unseen or missing category is still answered."""
    train_x, train_y, test_x, _ = housing
    predictor = get_family(name).fit(train_x, train_y, first_setting(name, len(train_x)), seed=0)
    assert isinstance(predictor, TabularPredictor) and predictor.schema["ocean_proximity"] == "categorical"
    features = predictor.estimator.named_steps["features"]
    [(_, encoder, columns)] = [part for part in features.transformers_ if part[0] == "cat"]
    assert columns == ["ocean_proximity"]
    expected = "OneHotEncoder" if name == "ridge" else "OrdinalEncoder"
    assert type(encoder).__name__ == expected
    model = predictor.estimator.steps[-1][1]
    if name == "gbm-tuned":
        assert model.is_categorical_.tolist() == [True] + [False] * 8  # the category first, then 8 numbers

    row = dict(test_x[0], median_income=4.0, total_bedrooms=None)
    places = ["INLAND", "NEAR BAY", "NEVER SEEN", None]
    values = predictor.predict_proba([dict(row, ocean_proximity=place) for place in places])[:, 0]
    assert np.isfinite(values).all()
    assert values[1] - values[0] > 20_000, values  # inland districts are cheaper, by far, in every family


def test_gbm_tuned_stops_early_and_searches_learning_rate_leaves_l2_and_loss(housing: Rows) -> None:
    train_x, train_y, _, _ = housing
    family = get_family("gbm-tuned")
    grid = family.grid(len(train_x))
    assert len(grid) == 6 and {p["loss"] for p in grid} == {"squared_error", "absolute_error"}
    assert len({(p["learning_rate"], p["max_leaf_nodes"], p["l2_regularization"]) for p in grid}) == 3
    for params in (grid[0], grid[3]):  # each loss, the fast learning rate
        model = family.fit(train_x, train_y, params, seed=0).estimator.steps[-1][1]
        # it stopped because the held-out loss stopped improving, long before the cap
        assert N_ITER_NO_CHANGE < model.n_iter_ < MAX_ITER / 2, model.n_iter_
        assert model.loss == params["loss"]
        scores = model.validation_score_
        assert len(scores) == model.n_iter_ + 1
        assert scores[-N_ITER_NO_CHANGE - 1 :].max() - scores[-N_ITER_NO_CHANGE - 1] < 1e-7 * abs(scores[-1]) + 1e-7


@pytest.mark.parametrize("name", ["random-forest", "gbm-tuned"])
def test_a_tree_pointing_outside_its_arrays_is_refused_at_load(name: str, housing: Rows, tmp_path: Path) -> None:
    train_x, train_y, _, _ = housing
    predictor = get_family(name).fit(train_x[:500], train_y[:500], first_setting(name, 500), seed=0)
    predictor.save(tmp_path)
    get_family(name).load(tmp_path)  # as saved: loads
    model = predictor.estimator.steps[-1][1]
    if name == "random-forest":
        model.estimators_[3].tree_.children_left[0] = 10**6  # the root's left child far past the last node
    else:
        model._predictors[2][0].nodes["right"][0] = 0  # the root's right child is the root: a walk never ends
    dump_skops(predictor.estimator, tmp_path / MODEL_FILE)
    with pytest.raises(UntrustedArtifact, match=r"malformed trees: .*a split points at a node that is not after it"):
        get_family(name).load(tmp_path)

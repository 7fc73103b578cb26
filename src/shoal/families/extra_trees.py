"""`extra-trees`: scikit-learn's extremely randomized trees (every tree on all rows, a random threshold per
feature at each split: faster to fit than a random forest, smoother) on ordinal-coded categories
(`forest.ForestFamily`)."""

from __future__ import annotations

from sklearn.ensemble import ExtraTreesRegressor

from shoal.families import register
from shoal.families.forest import ForestFamily


@register
class ExtraTrees(ForestFamily):
    name = "extra-trees"
    cost = 2.0
    forest = ExtraTreesRegressor

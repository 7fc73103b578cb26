"""`random-forest`: scikit-learn's random forest (each tree on a bootstrap sample, the best split among a share
of the features) on ordinal-coded categories (`forest.ForestFamily`)."""

from __future__ import annotations

from sklearn.ensemble import RandomForestRegressor

from shoal.families import register
from shoal.families.forest import ForestFamily


@register
class RandomForest(ForestFamily):
    name = "random-forest"
    cost = 3.0
    forest = RandomForestRegressor

"""`gbm-tuned`: `gbm`'s model (histogram gradient boosting, native categorical splits, early stopping on an internal
validation share) with a wider search: the learning rate, the leaf count and the L2 penalty, each setting under
two losses, squared error and absolute error. The cross-validated metric picks among them, so a model judged on
MAE can get the absolute-error loss (the median, robust to a skewed or capped target) and one judged on RMSE or
R² the squared one.

Sized for 2 cores: 6 settings, each boosting until 20 iterations without a gain on the held-out share (at most
`MAX_ITER`); a setting with a smaller learning rate gets more iterations to use.
"""

from __future__ import annotations

from shoal.families import register
from shoal.families.base import Params
from shoal.families.gbm import Gbm

MAX_ITER = 1000
#: (learning rate, leaf count, L2 penalty): gbm's first setting; more, smaller steps on bigger trees; small trees
SHAPES = ((0.1, 31, 0.0), (0.05, 63, 1.0), (0.05, 15, 1.0))
LOSSES = ("squared_error", "absolute_error")


@register
class GbmTuned(Gbm):
    name = "gbm-tuned"
    cost = 6.0
    expected_train_seconds_per_1k_rows = 3.0

    def grid(self, n_rows: int) -> list[Params]:
        return [
            {
                "loss": loss,
                "learning_rate": rate,
                "max_leaf_nodes": leaves,
                "l2_regularization": l2,
                "max_iter": MAX_ITER,
            }
            for loss in LOSSES
            for rate, leaves, l2 in SHAPES
        ]

"""Watching production: is today's traffic still like the data a version was trained on, and how good is it now?

- `stats`: the two-sample tests (a kernel MMD with a permutation p-value, Kolmogorov–Smirnov, chi-squared) and the
  Benjamini–Hochberg correction that keeps a window's many tests within one false-alarm level;
- `drift`: a window of inputs (and the answers given to them) against a version's reference sample, per input kind:
  texts (their features, length and out-of-vocabulary rate), table rows (each column and all of them together), and
  the predicted labels or values; a verdict only once the window holds `min_samples` inputs;
- `estimate`: accuracy estimated without labels from calibrated confidence (CBPE's idea for classifiers);
- `watch`: a production version's newest logged predictions against its reference.

`stats`, `drift` and `estimate` are numpy, scipy and scikit-learn only; `watch` reads a version's reference and its
newest logged predictions through the registry (for `shoal drift` and the worker's checks, `shoal.worker.drift`).
"""

#: the registry event of a drift alert (`shoal history`, `GET /v1/models/{name}/alerts`); here, so the server can name
#: it without importing the tests' numerical stack
DRIFT_EVENT = "drift"
#: the registry event of every check with a verdict (alert or not): the dashboard's "over time"
CHECK_EVENT = "drift_check"

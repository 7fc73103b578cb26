"""Confidence cascades: a classification model answers what it is sure of and sends the rest to a fallback.

- `spec`: the `cascade:` key of a model in the fleet file and the checks across models (fallback, labels, cycles);
- `calibration`: temperature scaling on out-of-fold probabilities and the deferral threshold for a target (numpy);
- `fallback`: the one interface a fallback predictor implements (a model of the fleet today, an LLM endpoint later);
- `combiner`: per input, after the small model's batch, the unsure inputs to the fallback, with its caps;
- `curve`: the coverage–accuracy curve of a cascade on a test set.
"""

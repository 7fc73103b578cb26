"""Evaluation: metrics with bootstrap CIs, paired tests, latency/size/memory profiling and cost."""

from shoal.evaluate.evaluator import TestSet, evaluate, predict_indices

__all__ = ["TestSet", "evaluate", "predict_indices"]

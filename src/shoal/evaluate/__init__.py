"""Evaluation: metrics with bootstrap CIs, paired tests, latency/size/memory profiling and cost."""

from shoal.evaluate.evaluator import evaluate

__all__ = ["evaluate"]

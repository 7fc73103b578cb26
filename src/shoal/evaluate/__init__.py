"""Evaluation: metrics with bootstrap CIs, paired tests, latency/size/memory profiling and cost."""

from shoal.evaluate.evaluator import evaluate
from shoal.tasks.base import TestSet

__all__ = ["TestSet", "evaluate"]

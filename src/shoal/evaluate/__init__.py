"""Evaluation: metrics with bootstrap CIs, paired tests, latency/size/memory profiling and cost."""

from shoal.evaluate.evaluator import quality, with_costs

__all__ = ["quality", "with_costs"]

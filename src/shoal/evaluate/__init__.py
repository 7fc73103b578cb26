"""Evaluation: metrics with bootstrap CIs, paired tests, latency/size/memory profiling and cost.

Imports nothing itself, so a server that reads live accuracy (`live`) does not load the evaluation stack."""

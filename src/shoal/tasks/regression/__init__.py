"""Tabular regression: numeric and categorical feature columns and a numeric target."""

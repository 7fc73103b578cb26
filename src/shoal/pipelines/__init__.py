"""Pipelines: models of the fleet working together on one input (`spec`: the fleet file's `pipelines:`,
`run`: the one runner the server and the evaluation share)."""

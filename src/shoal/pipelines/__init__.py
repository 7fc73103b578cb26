"""Pipelines: models of the fleet working together on one input (`spec`: the fleet file's `pipelines:`, `run`: the
one runner the server and the evaluation share, `testset`: a pipeline's registered test set, `evaluate`: judged end
to end, `history`: the score recorded when one of its models changes production version)."""

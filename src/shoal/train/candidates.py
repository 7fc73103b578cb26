"""The final fits of a model's candidates, on every core of the training pool.

Each final fit is one pool job: fit on all training rows with the searched setting (on the features the search
already fitted on those rows, for a `FeatureFamily`, its solver beginning at the production version's solution when
the family can use it), the task's `after_fit` (the label audit), the artifact written
to its staging folder, the quality scores and outputs on the test set (the outputs stored beside the artifact, for
the gate), and the peak RSS of a fresh process that loads it (memory,
which a fit on another core does not change). Latency is not timed here: the trainer times it afterwards, one
candidate after the other with the pool idle (`evaluate.with_costs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joblib import delayed

from shoal.data.sets import TestSet, TrainSet
from shoal.evaluate.evaluator import quality
from shoal.evaluate.profile import PeakRss
from shoal.families import Family, Predictor
from shoal.families.base import FeatureFamily, write_json
from shoal.fleet import WorkspaceSpec
from shoal.gate import OUTPUTS_FILE
from shoal.registry.artifacts import full_disk_as_error
from shoal.tasks.base import TaskKind
from shoal.train.search import Failed, SearchResult, isolated, parallel_pool


@dataclass(frozen=True)
class Job:
    """One candidate's final fit: its family, what the search found, where its artifact goes."""

    family: Family
    found: SearchResult
    features: tuple[Any, Any] | None  # (featurizer, features) fitted on all training rows, for a FeatureFamily
    staged: Path
    start: Any = None  # where the head's solver begins (`FeatureFamily.head_start`), None: from zero
    started_from: int | None = None  # the version `start` was made from


@dataclass
class Built:
    """A candidate fitted, audited, saved to its staging folder and scored; its latency is not timed yet."""

    family: str
    predictor: Predictor | None  # None: not `portable` between processes; load it from the staging folder
    scores: dict[str, Any]
    error_rate: float | None
    fit_seconds: float
    eval_seconds: float  # scoring and peak RSS
    peak_rss_mb: float | None
    #: seconds of each step in the pool process: final_fit, the task's `after_fit` (`TaskKind.after_fit_phase`: the
    #: label audit), save, evaluation (test-set scores and stored outputs), peak_rss (waiting for the measuring process)
    phases: dict[str, float]


@isolated
def _build(task: TaskKind, job: Job, train: TrainSet, test: TestSet, metric: str, settings: WorkspaceSpec) -> Built:
    started = time.perf_counter()
    family = job.family
    # the process whose peak RSS is the artifact's starts now: its interpreter and imports run beside the fit, and it
    # loads the artifact once it is written (memory, which a busy core does not change)
    rss = PeakRss(family.name, job.staged, task.profile_inputs(test)) if settings.evaluation.measure_rss else None
    try:
        if job.features is not None and isinstance(family, FeatureFamily):
            featurizer, features = job.features
            head = family.fit_head(features, train.targets, job.found.params, settings.seed, start=job.start)
            predictor = family.assemble(featurizer, head)
        else:
            predictor = family.fit(train.inputs, train.targets, job.found.params, settings.seed)
        head_fitted = time.perf_counter()
        error_rate, files = task.after_fit(predictor, train, job.found.oof, test.labels, job.found.rows)
        fitted = time.perf_counter()
        with full_disk_as_error(job.staged, f"the {family.name} artifact"):
            predictor.save(job.staged)
            for file_name, content in files.items():
                write_json(job.staged / file_name, content)
        saved = time.perf_counter()
        scores, outputs = quality(task, predictor, test, metric, settings)
        stored = task.stored_outputs(outputs, test)
        if stored is not None:
            with full_disk_as_error(job.staged, f"the {family.name} artifact"):
                write_json(job.staged / OUTPUTS_FILE, stored)
        scored = time.perf_counter()
    finally:
        peak = rss.result() if rss is not None else None  # after a failure: None (nothing to load)
    done = time.perf_counter()
    return Built(
        family.name,
        predictor if predictor.portable else None,
        scores,
        error_rate,
        fit_seconds=fitted - started,
        eval_seconds=done - saved,
        peak_rss_mb=peak,
        phases={
            "final_fit": head_fitted - started,
            task.after_fit_phase: fitted - head_fitted,
            "save": saved - fitted,
            "evaluation": scored - saved,
            "peak_rss": done - scored,
        },
    )


def build(
    task: TaskKind, jobs: list[Job], train: TrainSet, test: TestSet, metric: str, settings: WorkspaceSpec
) -> list[Built | Failed]:
    """Every job's final fit, audit, artifact, scores and peak RSS, on `settings.n_jobs` processes."""
    parallel = parallel_pool(settings.n_jobs, len(jobs))
    return list(parallel(delayed(_build)(task, job, train, test, metric, settings) for job in jobs))

"""Cold start: a model with no labelled data is answered by an LLM until a small version earns its place.

A text-classification model whose fleet entry has an `llm:` key (`shoal.llm.spec.ColdStartSpec`) and no production
version gets an LLM version (`start`: family `llm`, its artifact the endpoint, model, prompt and labels), promoted by
the actor `cold-start`; the server answers with it through the model's batcher (`shoal.llm.answerer`). Its answers
are logged like any prediction and feedback joins them. The worker, each scan (`shoal.worker.coldstart`):

1. starts the model cold when it has no production version;
2. turns the LLM's logged answers into a training drop (`llm_answers_drop`: provenance kind `llm-answers`, the
   texts that are not in the model's data yet and have no feedback) once the model's labelled rows reach
   `min_rows`, then after each `min_rows` new answers while the LLM still answers;
3. holds the model's retrain triggers until then (`waiting`).

Training then fits the small families on the LLM's answers and the feedback labels (a person's label supersedes the
LLM's); the gate judges each candidate against the LLM version (`llm_outputs`: the LLM asked on the test set,
its cached answers first) on the human-labelled test rows, or on the LLM's own answers when there are none
(`shoal.data.assembled` says which). Once a small version is promoted, the LLM is that version's cascade fallback
(`shoal.cascade.spec.model_cascade`): the server sends it only the inputs the small version is unsure of.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from shoal import __version__
from shoal.cascade.spec import model_cascade
from shoal.data.assembled import LLM_ANSWERS, assembled, labelled_by_llm_answers
from shoal.data.ingest import IngestResult, ingest_frame
from shoal.data.readers import LINE
from shoal.data.sets import TestSet
from shoal.llm.answerer import LLM_FAMILY, LLMCost, LLMRecord, classify_now, cost
from shoal.llm.client import LLMClient
from shoal.llm.spec import ColdStartSpec
from shoal.registry import PRODUCTION, Drop, Version
from shoal.registry.llm_store import LLMStore
from shoal.registry.prediction_log import PredictionLog
from shoal.registry.records import Profile, VersionMetrics
from shoal.tasks.text_classification import normalize
from shoal.workspace import Workspace

ACTOR = "cold-start"
#: the most logged answers one drop reads
MAX_ANSWERS = 1_000_000


def cold_spec(ws: Workspace, name: str) -> ColdStartSpec | None:
    """The model's `llm:` key (None: it does not start cold)."""
    return getattr(ws.model(name), "llm", None)


def record(ws: Workspace, name: str, cold: ColdStartSpec) -> LLMRecord:
    spec = ws.model(name)
    return LLMRecord.of(cold.endpoint, ws.fleet.llm[cold.endpoint], cold.prompt, list(getattr(spec, "labels", [])))


def answering(ws: Workspace, name: str) -> Version | None:
    """The model's production version when it is an LLM version (the LLM answers every input), else None."""
    number = ws.registry.alias(name, PRODUCTION)
    if number is None:
        return None
    version = ws.registry.version(name, number)
    return version if version.family == LLM_FAMILY else None


def start(ws: Workspace, name: str) -> Version | None:
    """Register the model's LLM version and promote it, when the model has an `llm:` key and no production version;
    the version promoted, else None."""
    cold = cold_spec(ws, name)
    registry = ws.registry
    if cold is None or (name in registry.model_names() and registry.alias(name, PRODUCTION) is not None):
        return None
    spec = ws.model(name)
    registry.ensure_model(name, spec.task)
    answers = record(ws, name, cold)
    digest = hashlib.sha256(json.dumps(asdict(answers), sort_keys=True).encode()).hexdigest()
    staged = registry.artifacts.stage()
    try:
        answers.save(staged)
        profile = Profile(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, None, 0.0)
        metrics = VersionMetrics(spec.metric, [], {}, 0, "", profile)
        version, _ = registry.register_version(
            name,
            family=LLM_FAMILY,
            params={"endpoint": answers.endpoint, "model": answers.model, "prompt": answers.prompt.hash[:12]},
            dataset_version=digest,
            code_version=f"shoal {__version__}",
            metrics=metrics,
            staged=staged,
            test_hash="",
            label_error_rate=None,
        )
    finally:
        registry.artifacts.discard(staged)
    reason = (
        f"cold start: no labelled data; the LLM endpoint {cold.endpoint!r} ({answers.model}) answers every input "
        f"until a small version is promoted (training starts at {cold.min_rows} labelled rows)"
    )
    registry.set_alias(name, version.number, actor=ACTOR, reason=reason)
    return version


def labelled_rows(drops: list[Drop]) -> int:
    """The rows the small families may train on: every drop's but a test set's (`--split test`)."""
    return sum(drop.n_rows for drop in drops if drop.split != "test")


def waiting(ws: Workspace, name: str) -> str | None:
    """Why the model does not retrain yet: the LLM answers and its labelled rows (LLM answers and feedback; a test
    set's rows do not count) are fewer than `min_rows`; None when it may."""
    cold = cold_spec(ws, name)
    if cold is None or answering(ws, name) is None:
        return None
    rows = labelled_rows(ws.registry.drops(name))
    if rows >= cold.min_rows:
        return None
    return f"cold start: {rows} of {cold.min_rows} labelled rows (min_rows) while the LLM answers"


def llm_answers_drop(ws: Workspace, log: PredictionLog, name: str) -> IngestResult | None:
    """The LLM version's logged answers as a training drop with provenance (kind `llm-answers`: the teacher
    `llm:<endpoint>`, its model, the prompt's hash, the version and the id of the last logged answer taken), once
    enough exist: the answers logged after the last such drop's (its `last_log_id`; every one for the first drop or
    a drop stored without it), of the texts not in the model's data yet and without feedback (a person's label is
    never overwritten by the LLM's), each text once. Written when the model's labelled rows and these answers reach
    `min_rows` (the first such drop), then at each `min_rows` new answers. Split like any drop;
    `shoal.data.assembled` keeps the LLM's labels out of the test set whenever human-labelled test rows exist."""
    cold, version = cold_spec(ws, name), answering(ws, name)
    if cold is None or version is None:
        return None
    registry = ws.registry
    drops = registry.drops(name)
    earlier = [drop for drop in drops if labelled_by_llm_answers(drop)]
    needed = cold.min_rows if earlier else cold.min_rows - labelled_rows(drops)
    after = earlier[-1].provenance.get("last_log_id") if earlier and earlier[-1].provenance else None
    rows = log.logged_after(name, version.number, after, MAX_ANSWERS)
    logged = {normalize(text): (text, label) for _, text, label in rows if label is not None}  # a text's latest
    if not logged or len(logged) < needed:  # checked before the model's data is read: most scans end here
        return None
    found = assembled(ws, name)
    known = set(pd.concat([found.train["text"], found.test["text"]]).map(normalize)) if found is not None else set()
    known |= {normalize(f.text) for f in log.feedback(name)}
    fresh = {key: answer for key, answer in logged.items() if key not in known}
    if not fresh or len(fresh) < needed:
        return None
    answers = LLMRecord.load(registry.artifacts.open(version.artifact_uri, version.checksum))
    spec = ws.model(name)
    texts, labels = zip(*fresh.values(), strict=True)
    frame = pd.DataFrame(
        {LINE: range(1, len(texts) + 1), spec.text_column: list(texts), spec.label_column: list(labels)}  # type: ignore[attr-defined]
    )
    provenance = {
        "kind": LLM_ANSWERS,
        "teacher": f"llm:{answers.endpoint}",
        "endpoint_model": answers.model,
        "prompt_hash": answers.prompt.hash,
        "version": version.number,
        "last_log_id": rows[-1][0],
        "confidence": None,
    }
    source = f"{LLM_ANSWERS} of v{version.number} ({answers.endpoint}, {answers.model}): {len(texts)} answer(s)"
    return ingest_frame(ws, name, frame, source=source, split="auto", skip_invalid=True, provenance=provenance)


def llm_client(ws: Workspace, endpoint: str) -> LLMClient:
    return LLMClient(endpoint, ws.fleet.llm[endpoint], LLMStore(ws.registry))


def llm_outputs(ws: Workspace, version: Version, test: TestSet) -> tuple[np.ndarray, LLMCost]:
    """An LLM version's gate outputs on `test` (its label indices; cached answers first, the rest asked now) and
    the cost per million calls its answers measured. Raises an `LLMError` when the endpoint leaves an input
    unanswered."""
    answers = LLMRecord.load(ws.registry.artifacts.open(version.artifact_uri, version.checksum))
    labels = classify_now(llm_client(ws, answers.endpoint), answers.prompt, list(test.inputs))
    index = {label: i for i, label in enumerate(test.labels)}
    outputs = np.array([index.get(label, -1) for label in labels], dtype=np.int64)
    return outputs, llm_cost(ws, answers)


def llm_cost(ws: Workspace, answers: LLMRecord) -> LLMCost:
    """The LLM tier's $ per million calls with `answers`' prompt, from its measured tokens and declared prices."""
    return cost(LLMStore(ws.registry), answers.endpoint, ws.fleet.llm[answers.endpoint], answers.prompt)


def llm_tier(
    ws: Workspace, name: str, *, labels: list[str] | None = None, deferred: float | None = None
) -> dict[str, Any] | None:
    """The LLM tier of model `name` and what it costs beside the small tier (`shoal eval`, the report, `/v1/models`):
    its role (`answerer` while an LLM version is in production, `fallback` when it is a small version's cascade
    fallback), the endpoint's $ per million calls from the tokens its cached answers measured (with the prompt over
    `labels`, the small version's, when given) and, as a fallback, the cascade's $ per million predictions: the small
    version's plus the share `deferred` (measured on the test set, else the declared `max_deferral`) of the LLM's.
    None for a model without an LLM."""
    registry, spec = ws.registry, ws.model(name)
    cascade = model_cascade(spec)
    if getattr(spec, "llm", None) is None and (cascade is None or cascade.fallback_llm is None):
        return None
    number = registry.alias(name, PRODUCTION) if name in registry.model_names() else None
    version = registry.version(name, number) if number is not None else None
    if version is not None and version.family == LLM_FAMILY:
        answers = LLMRecord.load(registry.artifacts.open(version.artifact_uri, version.checksum))
        if answers.endpoint not in ws.fleet.llm:  # renamed or removed from the fleet file: no price to apply
            return None
        measured = llm_cost(ws, answers)
        return {"role": "answerer", **measured.as_dict(), "cost_per_million_predictions": measured.cost_per_million}
    if cascade is None or cascade.fallback_llm is None or cascade.fallback_llm.llm not in ws.fleet.llm:
        return None
    endpoint = cascade.fallback_llm.llm
    spec = ws.fleet.llm[endpoint]
    prompt = LLMRecord.of(endpoint, spec, cascade.fallback_llm.prompt, labels).prompt if labels else None
    measured = cost(LLMStore(registry), endpoint, spec, prompt)
    share = deferred if deferred is not None else cascade.max_deferral
    small = version.metrics.profile.cost_per_million if version is not None else None
    combined = (
        small + share * measured.cost_per_million
        if small is not None and share is not None and measured.cost_per_million is not None
        else None
    )
    return {
        "role": "fallback",
        **measured.as_dict(),
        "small_cost_per_million": small,
        "deferred": share,
        "deferred_measured": deferred is not None,
        "cost_per_million_predictions": combined,
    }


def measured_llm_tier(ws: Workspace, name: str) -> dict[str, Any] | None:
    """`llm_tier` with the share the production small version defers measured on the current test set (its
    calibrated confidence below its threshold; no LLM call): for `shoal eval` and the report."""
    from shoal.cascade.calibration import confidence
    from shoal.cascade.combiner import load_route
    from shoal.cascade.evaluation import current_test_set

    registry, cascade = ws.registry, model_cascade(ws.model(name))
    number = registry.alias(name, PRODUCTION) if name in registry.model_names() else None
    version = registry.version(name, number) if number is not None else None
    if version is None or version.family == LLM_FAMILY or cascade is None or cascade.fallback_llm is None:
        return llm_tier(ws, name)
    predictor = ws.load_predictor(version)
    route = load_route(registry.artifacts.open(version.artifact_uri, version.checksum), cascade)
    test = current_test_set(ws, name)
    deferred = None
    if route is not None and test is not None:
        proba = predictor.predict_proba(test.inputs)
        deferred = float((confidence(proba, route.temperature) < route.threshold).mean())
    return llm_tier(ws, name, labels=list(predictor.labels), deferred=deferred)

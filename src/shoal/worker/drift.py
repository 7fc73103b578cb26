"""The worker's drift checks: at each model's `monitor.every`, its newest served predictions against its production
version's reference (`shoal.monitor.watch`); a drift is an alert — a `drift` event in the registry (`shoal history`,
`GET /v1/models/{name}/alerts`), POSTed to the fleet's `alerts.webhook` if set — and, with `retrain.on_drift`, a
retrain job when labelled data the production version was not trained on exists (never a retrain on the same data).

Every check's level comes from the fleet's alert budget (`alerts.budget_per_week`) shared by all checks of the week,
so on traffic that has not moved the fleet raises at most that many alerts a week on average. A check runs once per
interval: at once when the worker starts unless the registry holds this interval's check already, then at each new
interval boundary; every check with a verdict is a `drift_check` event (the dashboard
shows them over time); when several workers run, the first to record an interval's check wins (atomically:
`Registry.record_event_once`), and only it alerts.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import httpx

from shoal.monitor import CHECK_EVENT, DRIFT_EVENT
from shoal.monitor.drift import level_for_budget
from shoal.monitor.watch import Watched, latest_window
from shoal.registry.database import now
from shoal.worker.logs import emit
from shoal.worker.triggers import Triggers, schedule_slot
from shoal.workspace import Workspace

WEBHOOK_TIMEOUT_S = 5.0
WEEK_S = 7 * 86400


class DriftChecks:
    """Runs each monitored model's drift check once per interval and acts on its alerts."""

    def __init__(self, ws: Workspace, triggers: Triggers) -> None:
        self.ws, self.triggers = ws, triggers
        self._slots: dict[str, datetime] = {}

    def level(self) -> float:
        """The level of one check: the fleet's alert budget spread over every check of a week."""
        checks = sum(WEEK_S / spec.monitor.seconds for spec in self.ws.fleet.models.values() if spec.monitor)
        return level_for_budget(self.ws.fleet.workspace.alerts.budget_per_week, checks)

    def check(self, model: str, *, at: datetime | None = None) -> Watched | None:
        """Check `model` if its interval has turned since the last check; the outcome, or None when not due."""
        monitor = self.ws.model(model).monitor
        if monitor is None:
            return None
        slot = schedule_slot(monitor.every, at or now())
        if model not in self._slots:  # a worker starting: the interval of the last recorded check, if any
            latest = self.ws.registry.events(model, limit=1, kind=CHECK_EVENT, latest=True)
            self._slots[model] = (
                datetime.fromisoformat(latest[-1].payload["slot"])
                if latest
                else datetime.min.replace(tzinfo=slot.tzinfo)
            )
        if slot <= self._slots[model]:
            return None
        self._slots[model] = slot
        last = self.ws.registry.events(model, limit=1, kind=CHECK_EVENT, latest=True)
        watched = latest_window(
            self.ws,
            model,
            window=monitor.window,
            min_samples=monitor.min_samples,
            level=self.level(),
            accuracy_margin=monitor.accuracy_margin,
            window_hours=monitor.window_hours,
            feedback_after=last[-1].payload.get("feedback_id") if last else None,
        )
        verdict = watched.verdict
        emit("drift_checked", model=model, version=watched.version, n=verdict.n, result=verdict.summary())
        if verdict.pending is None:
            recorded = self.ws.registry.record_event_once(
                model, CHECK_EVENT, slot.isoformat(), verdict.summary(), watched.version, _payload(watched, slot)
            )
            if recorded and verdict.drifted:  # another worker recorded this interval's check: its alert, not ours
                self._alert(watched, slot)
        return watched

    def _alert(self, watched: Watched, slot: datetime) -> None:
        registry, model = self.ws.registry, watched.model
        action = self._retrain(watched)
        verdict = watched.verdict
        payload = {**_payload(watched, slot), "action": action}
        registry.record_event(model, DRIFT_EVENT, f"{verdict.summary()}; {action}", watched.version, payload)
        emit("drift_alert", 30, model=model, version=watched.version, result=verdict.summary(), action=action)
        webhook = self.ws.fleet.workspace.alerts.webhook
        if webhook is not None:
            body = {
                "model": model,
                "version": watched.version,
                "kind": DRIFT_EVENT,
                "message": verdict.summary(),
                **payload,
            }
            try:
                httpx.post(webhook, json=body, timeout=WEBHOOK_TIMEOUT_S).raise_for_status()
            except httpx.HTTPStatusError as error:  # the alert stands in the registry; the hook is not retried
                emit("webhook_failed", 40, model=model, status=error.response.status_code)  # never the URL: a secret
            except httpx.HTTPError as error:
                emit("webhook_failed", 40, model=model, error=type(error).__name__)

    def _retrain(self, watched: Watched) -> str:
        """What the alert does about it: queue a retrain on data not trained on yet, or say why not."""
        if not self.ws.model(watched.model).retrain.on_drift:
            return "not retrained (retrain.on_drift is off)"
        pending = self.triggers.pending(watched.model)
        if pending is None:
            return "not retrained: every labelled drop is already trained on or queued (add data, or send feedback)"
        job = self.triggers.enqueue(watched.model, pending.dataset_version, f"drift: {watched.verdict.summary()}")
        return f"retrain job {job.id} queued on {pending.new_rows} new row(s)"


def _payload(watched: Watched, slot: datetime) -> dict[str, Any]:
    verdict = watched.verdict
    return {
        "slot": slot.isoformat(),
        "n": verdict.n,
        "level": verdict.level,
        **({"source": watched.source} if watched.source is not None else {}),
        "drifted": verdict.drifted,
        "feedback_id": watched.feedback_id,
        "tests": [{k: _finite(v) for k, v in vars(finding).items()} for finding in verdict.findings],
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (PostgreSQL's json refuses them): such a number is stored as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value

"""What the LLM client keeps in the registry database: its response cache and its spend per UTC day.

The cache holds an endpoint's validated labels keyed by a hash of (endpoint, model, prompt hash, input hash): no
input text is stored. The spend row of (endpoint, model, day) is added to in one statement (an upsert), so every
server and worker of a fleet sharing the registry counts against one daily cap. SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from shoal.registry import schema as t
from shoal.registry.database import Registry, RegistryError, now


def cache_key(endpoint: str, model: str, prompt_hash: str, input_hash: str) -> str:
    return hashlib.sha256("\0".join((endpoint, model, prompt_hash, input_hash)).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One answer to keep: its key's parts and the label."""

    key: str
    prompt_hash: str
    input_hash: str
    label: str


@dataclass(frozen=True)
class Spend:
    """What an endpoint's model was sent and cost on one UTC day."""

    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    dollars: float = 0.0


class LLMStore:
    """The LLM cache and spend tables of `registry`'s database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        dialect = registry.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise RegistryError(f"the LLM cache and spend need a SQLite or PostgreSQL registry, not {dialect}")
        self._insert: Any = sqlite.insert if dialect == "sqlite" else postgresql.insert

    def cached(self, keys: list[str]) -> dict[str, str]:
        """The cached label of each of `keys` that has one."""
        if not keys:
            return {}
        query = select(t.llm_cache.c.key, t.llm_cache.c.label).where(t.llm_cache.c.key.in_(set(keys)))
        with self.registry._read() as conn:
            return {key: label for key, label in conn.execute(query)}

    def spend(self, endpoint: str, model: str, day: date) -> Spend:
        c = t.llm_spend.c
        query = select(c.requests, c.tokens_in, c.tokens_out, c.dollars).where(
            c.endpoint == endpoint, c.model == model, c.day == day
        )
        with self.registry._read() as conn:
            row = conn.execute(query).first()
        return Spend(*row) if row else Spend()

    def record(
        self,
        endpoint: str,
        model: str,
        day: date,
        *,
        tokens_in: int,
        tokens_out: int,
        dollars: float,
        entry: CacheEntry | None,
    ) -> None:
        """Add one answered request to the day's spend and, for a valid answer (`entry`), keep it in the cache;
        one transaction."""
        spend = self._insert(t.llm_spend).values(
            endpoint=endpoint,
            model=model,
            day=day,
            requests=1,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            dollars=dollars,
        )
        c = t.llm_spend.c
        added = {name: c[name] + spend.excluded[name] for name in ("requests", "tokens_in", "tokens_out", "dollars")}
        with self.registry._write() as conn:
            conn.execute(spend.on_conflict_do_update(index_elements=["endpoint", "model", "day"], set_=added))
            if entry is not None:
                values = dict(endpoint=endpoint, model=model, tokens_in=tokens_in, tokens_out=tokens_out)
                cached = self._insert(t.llm_cache).values(
                    key=entry.key,
                    prompt_hash=entry.prompt_hash,
                    input_hash=entry.input_hash,
                    label=entry.label,
                    created_at=now(),
                    **values,
                )
                conn.execute(cached.on_conflict_do_nothing(index_elements=["key"]))

    def usage(self, endpoint: str, model: str, prompt_hash: str | None = None) -> Spend:
        """The answers cached for `endpoint`'s `model` (of one prompt, if given) and the tokens they measured: what a
        call costs, measured (`dollars` is left to the caller's prices)."""
        c = t.llm_cache.c
        query = select(func.count(), func.coalesce(func.sum(c.tokens_in), 0), func.coalesce(func.sum(c.tokens_out), 0))
        query = query.where(c.endpoint == endpoint, c.model == model)
        if prompt_hash is not None:
            query = query.where(c.prompt_hash == prompt_hash)
        with self.registry._read() as conn:
            requests, tokens_in, tokens_out = conn.execute(query).one()
        return Spend(int(requests), int(tokens_in), int(tokens_out))

"""Tables of the registry database (SQLAlchemy Core). Only registry/ imports this."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("task", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

model_defaults = Table(
    "model_defaults",
    metadata,
    Column("model_id", ForeignKey("models.id"), primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("why", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

drops = Table(
    "drops",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("uri", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("split", String(8), nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("n_train", Integer, nullable=False),
    Column("n_test", Integer, nullable=False),
    Column("warnings", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "hash", name="uq_drop"),
)

# where a drop's labels came from when no human gave them (a teacher's, a generator's): one row per such drop, written
# with the drop; `record` holds the kind ("teacher" or "synth"), the teacher, the prompt hash and one confidence per row
drop_provenance = Table(
    "drop_provenance",
    metadata,
    Column("drop_id", ForeignKey("drops.id"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("record", JSON, nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("family", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("params_hash", String(64), nullable=False),
    Column("dataset_version", String(64), nullable=False),
    Column("code_version", String(64), nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("test_hash", String(64), nullable=False),
    Column("label_error_rate", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "number", name="uq_version_number"),
    UniqueConstraint("model_id", "dataset_version", "family", "params_hash", name="uq_version_recipe"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", ForeignKey("models.id"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer, nullable=False),
    Column("actor", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id")),
    Column("kind", String(32), nullable=False),
    Column("version", Integer),
    Column("message", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("dataset_version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_expires", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("model_id", "kind", "dataset_version", name="uq_job"),
)

pipeline_drops = Table(
    "pipeline_drops",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("uri", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

pipeline_scores = Table(
    "pipeline_scores",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer, nullable=False),
    Column("actor", String(32), nullable=False),
    Column("record", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# an LLM endpoint's validated answers, keyed by a hash of (endpoint, model, prompt hash, input hash): no text is kept
llm_cache = Table(
    "llm_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    Column("prompt_hash", String(64), nullable=False),
    Column("input_hash", String(64), nullable=False),
    Column("label", Text, nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# what each LLM endpoint's model was sent and cost, per UTC day, every process of the fleet together
llm_spend = Table(
    "llm_spend",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("endpoint", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    Column("day", Date, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("dollars", Float, nullable=False),
    UniqueConstraint("endpoint", "model", "day", name="uq_llm_spend_day"),
)

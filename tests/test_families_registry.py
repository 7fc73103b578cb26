"""The family registry: the task each built-in family is listed under (what validates a fleet file without importing
any family module) is the task of the class that its module registers."""

from __future__ import annotations

from shoal.families import check_families, family_names, get_family
from shoal.tasks import task_names


def test_every_family_is_listed_under_the_task_of_its_class() -> None:
    listed = {name: task for task in task_names() for name in family_names(task)}
    assert sorted(listed) == family_names()
    assert {name: get_family(name).task for name in listed} == listed


def test_a_family_of_another_task_or_unknown_is_refused_by_name() -> None:
    assert check_families("regression", ["mean", "ridge", "gbm"]) is None
    assert check_families("regression", ["tfidf-logreg"]) == (
        "family 'tfidf-logreg' is for task 'text-classification', not 'regression'"
    )
    assert check_families("regression", ["nope"]).startswith(
        "unknown family 'nope'; allowed: extra-trees, gbm, gbm-tuned, mean, random-forest, ridge"
    )

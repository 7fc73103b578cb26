"""The import rules of docs/architecture.md, checked on the source: each layer imports only what it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "shoal"


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved against the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def _layer(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return parts[0]


FILES = sorted(SRC.rglob("*.py"))

# (layer, forbidden import prefixes)
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("serve", ("shoal.worker", "shoal.train", "shoal.cli", "shoal.data.audit", "cleanlab", "sqlalchemy", "typer")),
    ("train", ("shoal.serve", "shoal.worker", "shoal.cli", "fastapi", "starlette", "sqlalchemy", "typer")),
    ("families", ("shoal.registry", "shoal.serve", "shoal.worker", "shoal.cli", "shoal.train", "sqlalchemy", "typer")),
    ("tasks", ("shoal.registry", "shoal.serve", "shoal.worker", "shoal.cli", "fastapi", "starlette", "sqlalchemy")),
    ("data", ("shoal.serve", "shoal.worker", "shoal.cli", "shoal.train", "fastapi", "starlette", "typer")),
    ("evaluate", ("shoal.serve", "shoal.worker", "shoal.cli", "sqlalchemy", "typer")),
    (
        "pipelines",
        (
            "shoal.serve",
            "shoal.worker",
            "shoal.cli",
            "shoal.train",
            "fastapi",
            "starlette",
            "sqlalchemy",
            "typer",
        ),
    ),
    ("worker", ("shoal.serve", "shoal.cli", "sqlalchemy", "fastapi", "starlette", "typer")),
    (
        "cascade",
        ("shoal.serve", "shoal.train", "shoal.worker", "shoal.cli", "shoal.llm", "sqlalchemy", "fastapi", "starlette"),
    ),
    ("llm", ("shoal.serve", "shoal.train", "shoal.worker", "shoal.cli", "sqlalchemy", "fastapi", "starlette", "typer")),
    (
        "monitor",
        (
            "shoal.serve",
            "shoal.train",
            "shoal.worker",
            "shoal.cli",
            "sqlalchemy",
            "fastapi",
            "starlette",
        ),
    ),
]


@pytest.mark.parametrize(("layer", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_layer_imports_follow_the_rules(layer: str, forbidden: tuple[str, ...]) -> None:
    broken = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in FILES
        if _layer(path) == layer
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert not broken, "\n".join(broken)


def test_only_the_registry_speaks_sql() -> None:
    speaking = sorted(
        str(path.relative_to(SRC))
        for path in FILES
        if _layer(path) != "registry" and any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in _imports(path))
    )
    assert speaking == []


def test_only_the_cli_knows_typer_and_only_serve_knows_http() -> None:
    typer_users = sorted(str(p.relative_to(SRC)) for p in FILES if _layer(p) != "cli" and "typer" in _imports(p))
    http = ("fastapi", "starlette", "uvicorn")
    http_users = sorted(
        str(p.relative_to(SRC))
        for p in FILES
        if _layer(p) not in ("serve", "cli") and any(n.split(".")[0] in http for n in _imports(p))
    )
    assert typer_users == [] and http_users == []

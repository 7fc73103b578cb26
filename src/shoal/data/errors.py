"""Why a data drop was refused: the file, the line (or row) and the reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line is not None else self.reason


class DropRejected(ValueError):
    """A drop refused whole; nothing was written."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  {source}: {problem}" for problem in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"rejected {source}: {len(problems)} problem(s); nothing was written\n{shown}{more}\n"
            "Fix the file and ingest it again (or pass --skip-invalid to leave out the bad rows)."
        )

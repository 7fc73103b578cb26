"""Why a data drop was refused: the file, the line (or row) and the reason."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.data.text import printable

#: what to do next when the entry point does not say (each face sets its own: the CLI, HTTP, the inbox)
FIX_AND_RETRY = "Fix the data and send it again."


@dataclass(frozen=True)
class Problem:
    line: int | None
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", printable(self.reason))

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line is not None else self.reason


class DropRejected(ValueError):
    """A drop refused whole; nothing was written. `next_step` (what to do about it) depends on the entry point:
    the face that caught the error sets it before showing the message."""

    def __init__(self, source: str, problems: list[Problem], next_step: str = FIX_AND_RETRY) -> None:
        self.source = printable(source)
        self.problems = problems
        self.next_step = next_step
        super().__init__(self.source, problems)

    def __str__(self) -> str:
        problems = self.problems
        shown = "\n".join(f"  {self.source}: {problem}" for problem in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        return (
            f"rejected {self.source}: {len(problems)} problem(s); nothing was written\n{shown}{more}\n{self.next_step}"
        )

    @property
    def first_line(self) -> int | None:
        """The line of the first problem (None: the drop as a whole) — safe to log, unlike a reason, which may
        quote a user's value."""
        return self.problems[0].line if self.problems else None

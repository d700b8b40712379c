"""The report of rejected inputs that a partial success (exit 3) points to.

Every command reports the inputs it could not use the same way: each as one Problem
(yt8m/errors.py) added to its Report, printed as it is met, and listed in
`report-<command>.json` ({"input": where, "reason": reason}) when the job ends.
"""
from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass, field, replace

from .atomic import write_json
from .errors import EXIT_OK, EXIT_PARTIAL, Problem


@dataclass
class Report:
    command: str
    problems: list[Problem] = field(default_factory=list)
    done: int = 0

    def add(self, problem: Problem, outcome: str = "") -> None:
        """Report one input the job could not use. `outcome` heads its reason in the list
        (e.g. "damaged, skipped"), saying what the job did with it."""
        if outcome:
            problem = replace(problem, reason=f"{outcome}: {problem.reason}")
        self.problems.append(problem)
        print(f"rejected: {problem}", file=sys.stderr)

    def reject(self, where: str, reason: str) -> None:
        """Shorthand for `add(Problem(where, reason))`."""
        self.add(Problem(where, reason))

    @property
    def rejected(self) -> list[tuple[str, str]]:
        """(input, reason) of every problem reported, in order."""
        return [(p.where, p.reason) for p in self.problems]

    def write(self, out_dir: str) -> str | None:
        """Write report-<command>.json into out_dir when something was rejected."""
        if not self.problems:
            return None
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"report-{self.command}.json")
        body = {"command": self.command,
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "done": self.done,
                "rejected": [{"input": p.where, "reason": p.reason} for p in self.problems]}
        write_json(path, body, indent=1)
        print(f"{len(self.problems)} input(s) rejected; see {path}", file=sys.stderr)
        return path

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.problems else EXIT_OK

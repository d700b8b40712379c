"""The report of rejected inputs that a partial success (exit 3) points to."""
from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass, field

from .atomic import write_json
from .errors import EXIT_OK, EXIT_PARTIAL


@dataclass
class Report:
    command: str
    rejected: list[tuple[str, str]] = field(default_factory=list)
    done: int = 0

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append((name, reason))
        print(f"rejected: {name}: {reason}", file=sys.stderr)

    def write(self, out_dir: str) -> str | None:
        """Write report-<command>.json into out_dir when something was rejected."""
        if not self.rejected:
            return None
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"report-{self.command}.json")
        body = {"command": self.command,
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "done": self.done,
                "rejected": [{"input": n, "reason": r} for n, r in self.rejected]}
        write_json(path, body, indent=1)
        print(f"{len(self.rejected)} input(s) rejected; see {path}", file=sys.stderr)
        return path

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.rejected else EXIT_OK

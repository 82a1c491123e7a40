"""What applying a file does (or would do), record by record and field by field."""

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# A long value (custom details, a description) is cut in the plan; the file holds it whole.
SHOWN_VALUE_MAX_LENGTH = 120


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    # Not in the file, and no --prune: the record stays as it is, no longer managed.
    KEEP = "keep"


# Create, update and delete change the configuration; --check fails on them.
CHANGES = (Action.CREATE, Action.UPDATE, Action.DELETE)
SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.UNCHANGED: "=",
    Action.DELETE: "-",
    Action.KEEP: "=",
}


@dataclass(frozen=True, kw_only=True)
class FieldChange:
    """One option's old and new value; a secret's values are never held, only that it changed."""

    option: str
    old: Any = None
    new: Any = None
    secret: bool = False

    def describe(self) -> str:
        if self.secret:
            return f"{self.option}: changed"
        return f"{self.option} {_shown(self.old)} → {_shown(self.new)}"

    def as_json(self) -> dict:
        if self.secret:
            return {"option": self.option, "changed": True}
        return {"option": self.option, "old": self.old, "new": self.new}


@dataclass(frozen=True, kw_only=True)
class Change:
    """What happens to one record."""

    action: Action
    kind: str  # "destination" or "detection"
    name: str
    fields: tuple[FieldChange, ...] = ()
    managed_by: str = ""  # for KEEP: the file that managed it until now

    def lines(self) -> list[str]:
        head = f'{SYMBOLS[self.action]} {self.action} {self.kind} "{self.name}"'
        if self.action == Action.UPDATE:
            return [f"{head}: {change.describe()}" for change in self.fields]
        if self.action == Action.KEEP:
            released = f"; no longer managed by {self.managed_by}" if self.managed_by else ""
            return [f"{head}: not in the file{released} (--prune deletes it)"]
        return [head]

    def as_json(self) -> dict:
        return {
            "action": str(self.action),
            "kind": self.kind,
            "name": self.name,
            "fields": [change.as_json() for change in self.fields],
        }


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Every record's change, in the file's order, then those the file does not name."""

    changes: tuple[Change, ...]
    applied: bool
    managed_by: str

    @property
    def changed(self) -> bool:
        """Whether applying changes (or changed) the configuration."""
        return any(change.action in CHANGES for change in self.changes)

    def lines(self) -> list[str]:
        return [line for change in self.changes for line in change.lines()]

    def counts(self) -> dict[str, int]:
        return {action: sum(c.action == action for c in self.changes) for action in Action}

    def summary(self) -> str:
        """One sentence: what was (or would be) done, and who manages the records now."""
        counts = self.counts()
        done = ", ".join(f"{counts[action]} {action}d" for action in CHANGES)
        tally = f"{done}, {counts[Action.UNCHANGED]} unchanged"
        if not self.applied:
            verdict = "would change the database" if self.changed else "matches the database"
            return f"Nothing was changed (dry run): the file {verdict} ({tally})."
        return f"Applied: {tally}. The records in the file are managed by {self.managed_by}."

    def as_json(self) -> dict:
        return {
            "applied": self.applied,
            "changed": self.changed,
            "managed_by": self.managed_by,
            "changes": [change.as_json() for change in self.changes],
            "plan": self.lines(),
        }


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > SHOWN_VALUE_MAX_LENGTH:
        return text[: SHOWN_VALUE_MAX_LENGTH - 1] + "…"
    return text

"""Who makes a change, and through what: the actor every history record is kept under."""

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser

# Shown when the operating system cannot name the user (some containers have no login name).
UNKNOWN_OPERATOR = "unknown operator"
# How an admin change reads in the trail; the signed-in user is kept beside it.
ADMIN_VIA = "admin"


@dataclass(frozen=True)
class Actor:
    """The account (when there is one) and the words naming how the change was made."""

    via: str
    user: AbstractBaseUser | None = None


# A context variable, not a thread-local: the worker's threads and async views each keep theirs.
_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)


@contextmanager
def acting(via: str, *, user: AbstractBaseUser | None = None) -> Iterator[Actor]:
    """Record every change made inside the block as made by `user`, through `via`."""
    actor = Actor(via=via, user=user)
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def current_actor() -> Actor | None:
    """The actor of the innermost `acting` block, or None outside one."""
    return _actor.get()


def login_name() -> str:
    """The operating-system user running this process."""
    try:
        return getpass.getuser()
    except OSError:
        return UNKNOWN_OPERATOR


def command_via(command: str, detail: str = "", *, operator: str | None = None) -> str:
    """How a command's changes read, e.g. "apply_config config/destinations.yml (by root)"."""
    what = f"{command} {detail}" if detail else command
    return f"{what} (by {operator or login_name()})"


def api_via(token_name: str) -> str:
    """How changes made through the API with this token read."""
    return f"API token “{token_name}”"

"""Write the `.env` that `make run` needs: generated secrets, added only where missing."""

import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ENV_PATH = Path(os.environ.get("ENV_FILE") or Path(__file__).resolve().parent.parent / ".env")

LOCAL_HTTP = """\
# `make run` serves plain HTTP on 127.0.0.1. Behind TLS in production, delete these three lines.
SECURE_SSL_REDIRECT=False
SESSION_COOKIE_SECURE=False
CSRF_COOKIE_SECURE=False
"""


def new_secret_key() -> str:
    """64 characters of A-Z, a-z, 0-9, `-` and `_`: nothing a `.env` reader or a shell treats
    specially. Django's own generator also draws `$`, `#` and `(`: a key starting with `$` was
    read as the name of another variable, and `make run` failed one time in fifty.
    """
    return secrets.token_urlsafe(48)


def existing_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            names.add(line.split("=", 1)[0].removeprefix("export ").strip())
    return names


def main(path: Path = ENV_PATH) -> int:
    try:
        text = path.read_text() if path.exists() else ""
    except OSError as error:
        print(f"Cannot read {path}: {error.strerror}.", file=sys.stderr)
        return 1
    present = existing_names(text) | set(os.environ)
    additions = []
    if "SECRET_KEY" not in present:
        additions.append(f"SECRET_KEY={new_secret_key()}\n")
    if "FIELD_ENCRYPTION_KEYS" not in present:
        # Losing this key loses every stored routing key: it is only ever added, never replaced.
        additions.append(
            "# Fernet keys, newest first. Back this up: without it, stored routing keys are lost.\n"
            f"FIELD_ENCRYPTION_KEYS={Fernet.generate_key().decode()}\n"
        )
    if not text:
        additions.append(LOCAL_HTTP)
    if not additions:
        print(f"{path.name}: kept as it is")
        return 0
    if text and not text.endswith("\n"):
        text += "\n"
    try:
        path.write_text(text + "".join(additions))
        path.chmod(0o600)
    except OSError as error:
        print(
            f"Cannot write {path}: {error.strerror}. Create its folder or set ENV_FILE.",
            file=sys.stderr,
        )
        return 1
    written = sorted(existing_names("".join(additions)))
    print(f"{path.name}: wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

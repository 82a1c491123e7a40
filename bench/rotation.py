"""Rotation: `rotate_encryption_key` re-encrypting the routing keys of 10,000 destinations."""

from __future__ import annotations

import re
from pathlib import Path

from .sites import PYTHON, Site, fernet_key

DESTINATIONS = 10_000
UNUSED_EVENTS_URL = "http://127.0.0.1:9/v2/enqueue"
_REENCRYPTED = re.compile(r"(\d+) re-encrypted under the first key")


def measure(workdir: Path, *, log=print) -> dict:
    """Rows/s of the command as a process, and of the rotation alone in-process."""
    old_key, new_key = fernet_key(), fernet_key()
    site = Site.create(workdir / "rotation", events_url=UNUSED_EVENTS_URL, keys=[old_key])
    site.manage("migrate", "--noinput", "-v", "0")
    site.bench_step("seed", "keys", "--destinations", str(DESTINATIONS))
    rotated_keys = {"FIELD_ENCRYPTION_KEYS": f"{new_key},{old_key}"}

    command = site.clone(workdir / "rotation-command", **rotated_keys)
    finished = command.run(PYTHON, "manage.py", "rotate_encryption_key")
    match = _REENCRYPTED.search(finished.stdout)
    if match is None or int(match.group(1)) != DESTINATIONS:
        raise RuntimeError(f"rotate_encryption_key left values behind: {finished.stdout[-500:]}")

    in_process = site.clone(workdir / "rotation-inprocess", **rotated_keys)
    timed = in_process.bench_step("rotation_timing")
    if timed["rotated"] != DESTINATIONS:
        raise RuntimeError(f"the in-process rotation re-encrypted {timed['rotated']} values")
    result = {
        "rows_per_s": round(DESTINATIONS / finished.seconds, 1),
        "command_s": round(finished.seconds, 3),
        "rows_per_s_in_process": round(DESTINATIONS / timed["seconds"], 1),
        "in_process_s": round(timed["seconds"], 3),
        "setup": {"destinations": DESTINATIONS},
    }
    log(f"  rotation: {result['rows_per_s']:.0f} rows/s ({finished.seconds:.2f}s as a process)")
    return result

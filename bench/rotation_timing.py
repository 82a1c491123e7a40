"""Time the encryption-key rotation in-process: `python -m bench.rotation_timing`.

Run in the site's environment (bench.sites.Site.bench_step); prints one JSON line at the end.
The time excludes the interpreter's and Django's start-up, which the command's wall time holds.
"""

from __future__ import annotations

import json
import sys
import time

import django


def main() -> int:
    """Rotate every encrypted value under the first key and print the seconds it took."""
    django.setup()
    from destinations.keys.rotation import rotate_encryption_keys

    started = time.perf_counter()
    report = rotate_encryption_keys()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rotated": report.not_current}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

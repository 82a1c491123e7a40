"""The throughput baseline as a program: a pool of plain `requests` sessions and nothing else.

`python -m bench.bare_pool URL BODIES_FILE THREADS` posts every line of BODIES_FILE to URL and
prints how many PagerDuty accepted. It runs as its own process, timed from start to exit exactly
as `deliver_alerts --once` is, so both sides of the ratio pay for an interpreter and their imports;
it imports nothing but the standard library and requests (not bench/sites.py, nor Django).
"""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import requests


def post_all(url: str, bodies: list[bytes], threads: int) -> list[int]:
    """Every body posted by `threads` sessions, one per thread; the status of each answer."""
    local = threading.local()

    def post(body: bytes) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        return response.status_code

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, bodies))


def main(argv: list[str]) -> int:
    url, bodies_file, threads = argv
    with open(bodies_file, "rb") as lines:
        bodies = lines.read().splitlines()
    statuses = post_all(url, bodies, int(threads))
    accepted = statuses.count(202)
    print(f"accepted {accepted} of {len(statuses)}")
    return 0 if accepted == len(statuses) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

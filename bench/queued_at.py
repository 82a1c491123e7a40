"""When each run's page was queued: `python -m bench.queued_at`, a Django-side step of `latency`.

Prints one JSON object, run ID → the epoch seconds of its delivery's `queued_at`: the moment the
intake wrote the page, inside the run's transaction, so "run → PagerDuty" starts there.
"""

from __future__ import annotations

import json
import sys

import django


def main() -> int:
    django.setup()
    from destinations.models import Delivery

    queued = {
        run_id: queued_at.timestamp()
        for run_id, queued_at in Delivery.objects.filter(run__isnull=False)
        .order_by()
        .values_list("run__run_id", "queued_at")
    }
    print(json.dumps(queued))
    return 0


if __name__ == "__main__":
    sys.exit(main())

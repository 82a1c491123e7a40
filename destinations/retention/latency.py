"""Latency histograms of fixed logarithmic buckets, which any number of days add up in.

Exact percentiles need every value; the health page's 14 days must outlive the raw rows they
came from, so each day keeps a histogram instead. Buckets are fixed (the same edges every day,
for every destination), so days merge by adding counts. Each bucket also keeps the sum of its
values: a percentile reads as the mean of the values in its bucket, which is the value itself
when they are alike, and never more than one bucket (2^(1/16) - 1 ≈ 4.4 %) from the exact
nearest-rank value.
"""

import math

from django.db.models import Count, FloatField, Sum, Value
from django.db.models.functions import Floor, Greatest, Ln

# 16 buckets per doubling: 1 ms to a day is about 430 buckets, most of them empty and not stored.
BUCKETS_PER_DOUBLING = 16
_SCALE = BUCKETS_PER_DOUBLING / math.log(2)


def bucket_expression(latency_ms):
    """The bucket of a latency in milliseconds, computed by the database (under 1 ms is 0)."""
    return Floor(Ln(Greatest(latency_ms, Value(1.0))) * Value(_SCALE), output_field=FloatField())


class Histogram:
    """Counts and sums of latencies by bucket, for one destination over any days."""

    def __init__(self, buckets: dict[int, list[float]] | None = None) -> None:
        self.buckets: dict[int, list[float]] = buckets or {}

    @classmethod
    def from_json(cls, stored: dict) -> "Histogram":
        """A histogram as DailyRollup.latency stores it: {"bucket": [count, sum_ms]}."""
        return cls({int(bucket): [count, total] for bucket, (count, total) in stored.items()})

    def to_json(self) -> dict:
        return {str(bucket): [int(count), total] for bucket, (count, total) in self.buckets.items()}

    def add(self, bucket: int, count: int, total_ms: float) -> None:
        entry = self.buckets.setdefault(int(bucket), [0, 0.0])
        entry[0] += count
        entry[1] += total_ms

    def merge(self, other: "Histogram") -> None:
        for bucket, (count, total) in other.buckets.items():
            self.add(bucket, count, total)

    @property
    def count(self) -> int:
        return sum(int(count) for count, _ in self.buckets.values())

    def percentile(self, percent: int) -> float | None:
        """The nearest-rank percentile: the mean of the bucket holding rank ceil(percent·n/100)."""
        total = self.count
        if not total:
            return None
        rank = (percent * total + 99) // 100
        seen = 0
        for bucket in sorted(self.buckets):
            count, summed = self.buckets[bucket]
            seen += count
            if seen >= rank:
                return summed / count
        raise AssertionError("unreachable: the ranks add up to the count")


def histograms(delivered, latency_ms) -> dict[int, Histogram]:
    """Per destination, the histogram of `latency_ms` over a queryset, grouped in the database."""
    rows = (
        delivered.annotate(bucket=bucket_expression(latency_ms))
        .values_list("destination_id", "bucket")
        .annotate(count=Count("pk"), total=Sum(latency_ms, output_field=FloatField()))
        .order_by()
    )
    by_destination: dict[int, Histogram] = {}
    for destination_id, bucket, count, total in rows:
        by_destination.setdefault(destination_id, Histogram()).add(bucket, count, total)
    return by_destination

"""Retention: daily rollups of the delivery log, pruning it, and the daily job that does both."""

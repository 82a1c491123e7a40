"""The delivery engine: outbox, attempts, retry policy, send budgets, claims, the worker."""

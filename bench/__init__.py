"""Benchmarks of the delivery path, the admin pages and key rotation: `python -m bench`."""

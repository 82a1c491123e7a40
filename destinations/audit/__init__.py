"""The audit trail of destinations and detections: who changed what, when, old → new.

attribution.py (who and through what a change is made), records.py (how changes are kept, with
django-simple-history), trail.py (a record's changes as lines an admin reads).
"""

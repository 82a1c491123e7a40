"""Settings for the test suite: fixed keys, no .env, the database from DATABASE_URL if given."""

import os

os.environ["ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-use-0123456789")
# Two valid Fernet keys, newest first, so fallback decryption is exercised by default.
os.environ.setdefault(
    "FIELD_ENCRYPTION_KEYS",
    "hbdCKmtHqbtzzqmYZC2dMM87yOZ_Pd1chu3SLUVsY0k=,Cws7pGZEj-G4UWQsKlyQgqdMn2lq6zp8fO1Rm1oWE8g=",
)
os.environ.setdefault("DEBUG", "False")
os.environ.setdefault("SECURE_SSL_REDIRECT", "False")
os.environ.setdefault("DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test"))

from project.settings import *  # noqa: F403

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Unless a test says otherwise, nothing may reach the real PagerDuty.
PAGERDUTY_EVENTS_URL = "http://127.0.0.1:9/v2/enqueue"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: worker threads then meet SQLite's real locking (WAL and
    # busy timeout), as they do in production, instead of shared-cache "table is locked" errors.
    # One file per test process, so concurrent runs never share it; Django deletes it at the end.
    test_db = DATA_DIR / f"test-db-{os.getpid()}.sqlite3"  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(test_db)}  # noqa: F405

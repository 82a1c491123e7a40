"""Settings, read from the environment and `.env` (a real environment variable wins)."""

import os
from pathlib import Path

import environ

from project.serve import DEFAULT_BIND, admin_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE="" turns the file off (the test settings do, so a developer's .env never leaks in).
ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    # read_env only sets names that are not in the environment already.
    environ.Env.read_env(ENV_FILE)

DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env("SECRET_KEY")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Django's admin, running the site destinations/apps.py defines (titles, health page).
    "destinations.apps.DestinationsAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # The API's docs page and its Swagger UI files, served from /static/ like the admin's.
    "ninja",
    "destinations",
    "detections",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded database lives in DATA_DIR; SQLite cannot create the folder itself.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # IMMEDIATE takes the write lock when a transaction starts, so the worker's claim
            # (read due rows, mark them sending) cannot interleave with another writer.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["project.formats"]

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Production hardening; each is on unless DEBUG, and each can be set explicitly.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Logs go to stderr, so a command's stdout holds its result only. One-shot commands show
    # warnings and audit records only unless -v 2 or LOG_LEVEL (project/commands.py).
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django": {"level": "INFO"}},
}

# --- Detection Destinations --------------------------------------------------------------

# Fernet keys, newest first: the first encrypts, all decrypt (like SECRET_KEY_FALLBACKS).
# Validated by a system check rather than here, so a bad value is a readable error.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# When set, every destination posts here (a proxy or a staging mock) instead of its region's URL.
PAGERDUTY_EVENTS_URL = env("PAGERDUTY_EVENTS_URL", default=None) or None

# Where the product can be reached; sent to PagerDuty as the event's client_url. Unset, it is
# the admin at the address the web server binds (WEB_BIND, read by the Procfile).
WEB_BIND = env("WEB_BIND", default=DEFAULT_BIND)
SITE_URL = env("SITE_URL", default="") or admin_url(WEB_BIND) or admin_url(DEFAULT_BIND)

# payload.source when a run has no replay link; PagerDuty refuses a blank source.
PAGERDUTY_DEFAULT_SOURCE = env("PAGERDUTY_DEFAULT_SOURCE", default="detection-destinations")

# PagerDuty recommends rotating integration keys every 90 days.
ROUTING_KEY_MAX_AGE_DAYS = env.int("ROUTING_KEY_MAX_AGE_DAYS", default=90)

# Delivery (design §6). Attempts and age count from when a delivery was queued or re-queued.
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=30)
# Past this a page is stale: it is marked failed (visible in the admin and /healthz) instead.
DELIVERY_MAX_AGE_SECONDS = env.int("DELIVERY_MAX_AGE_SECONDS", default=6 * 3600)
DELIVERY_BACKOFF_BASE_SECONDS = env.float("DELIVERY_BACKOFF_BASE_SECONDS", default=2.0)
DELIVERY_BACKOFF_MAX_SECONDS = env.float("DELIVERY_BACKOFF_MAX_SECONDS", default=300.0)
# PagerDuty's Retry-After is obeyed up to this cap, so a bogus header cannot park a page for days.
DELIVERY_RETRY_AFTER_MAX_SECONDS = env.float("DELIVERY_RETRY_AFTER_MAX_SECONDS", default=900.0)
# PagerDuty accepts about 120 events per minute per integration key; over that it answers 429
# and drops the event. Each destination's budget is a token bucket counted in the database.
DELIVERY_RATE_PER_MINUTE = env.float("DELIVERY_RATE_PER_MINUTE", default=120.0)
DELIVERY_RATE_BURST = env.int("DELIVERY_RATE_BURST", default=20)
# How often an idle worker looks for due deliveries (seconds); on SQLite this bounds the added
# latency. Looking costs an idle SQLite worker little (1-2 % of a core at 0.1 s, 1.5-4 % at
# 0.05 s, measured over 10 s), so it looks twice as often as before. On PostgreSQL a
# notification wakes the worker at once (DELIVERY_LISTEN): polling finds retries as they fall
# due, and covers a lost connection.
DELIVERY_POLL_INTERVAL_SECONDS = env.float(
    "DELIVERY_POLL_INTERVAL_SECONDS",
    default=0.05 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 0.1,
)
# On PostgreSQL an idle worker also LISTENs, so a new run's pages wake it at once. Off behind a
# pooler in transaction mode (PgBouncer), where a LISTEN is not kept: workers then only poll.
DELIVERY_LISTEN = env.bool("DELIVERY_LISTEN", default=True)
# A lease lasts the destination's timeout plus this margin; then another worker may take it.
DELIVERY_LEASE_MARGIN_SECONDS = env.float("DELIVERY_LEASE_MARGIN_SECONDS", default=15.0)

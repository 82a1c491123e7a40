"""Settings, read from the environment and `.env` (a real environment variable wins)."""

import logging.config
import os
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from project import PRODUCT_NAME
from project.file_modes import secure_data_dir, secure_sqlite_files
from project.serve import DEFAULT_BIND, admin_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE="" turns the file off (the test settings do, so a developer's .env never leaks in).
ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    # read_env only sets names that are not in the environment already.
    environ.Env.read_env(ENV_FILE)

DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / "var")))


def secret(name: str, default: str | None = None) -> str:
    """A secret's value exactly as written.

    django-environ reads a value that starts with `$` as the name of another variable, and its
    KeyError then printed the rest of the secret in the traceback: a Django secret key starts
    with `$` one time in fifty, and a bearer token or a mistyped key may too.
    """
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the {name} environment variable")
    return value


SECRET_KEY = secret("SECRET_KEY")
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
    # The audit trail (destinations/audit/): django-simple-history rather than django-auditlog
    # or django-pghistory. pghistory works on PostgreSQL only (triggers), and the embedded
    # database is SQLite. simple-history declares Django 6.0 support (auditlog stops at 5.2),
    # needs no other package, keeps a field-by-field snapshot that can leave a column out (the
    # encrypted routing key), snapshots many-to-many choices, and has a "change reason" text
    # field that holds how a change was made ("apply_config config/destinations.yml (by root)").
    "simple_history",
    # The admin's date drill-down offered without querying the dates a long log holds.
    "django_admin_lightweight_date_hierarchy",
    "destinations",
    "detections",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Sends SECURE_CSP (below) on every answer.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Hands the signed-in user to the audit trail's records (destinations/audit/records.py).
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"

# The API's docs page (/api/v1/docs) is django-ninja's Swagger UI page: its template and its
# files, served from /static/ like the admin's. They are found in ninja's own folders, named
# here, rather than by listing "ninja" in INSTALLED_APPS: an app is imported by django.setup(),
# and importing ninja (with pydantic) cost every process 0.23 s at start, the worker included,
# which serves no page. find_spec locates the package without running it. The page itself is
# rendered by detections/api.py (DocsPage), and ninja's export_openapi_schema command is kept
# by detections/management/commands/export_openapi_schema.py.
NINJA_DIR = Path(find_spec("ninja").origin).parent
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # ninja's templates hold ninja/*.html only, so they hide no other app's template.
        "DIRS": [NINJA_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # {% csp_nonce_attr %} on the templates' own <style> blocks (SECURE_CSP).
                "django.template.context_processors.csp",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded database lives in DATA_DIR; SQLite cannot create the folder itself. The file
    # and DATA_DIR are made owner-only before SQLite first opens it (project/file_modes.py); a
    # folder named by DATABASE_URL elsewhere (/tmp, say) is only created, never changed.
    _sqlite_file = Path(DATABASES["default"]["NAME"])
    if _sqlite_file.parent.resolve() == DATA_DIR.resolve():
        secure_data_dir(DATA_DIR)
    else:
        _sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    secure_sqlite_files(_sqlite_file)
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
# ninja's static folder holds ninja/ only: the docs page's files keep their /static/ninja/ URLs.
STATICFILES_DIRS = [NINJA_DIR / "static"]
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
# Applied here, alone, as Django documents (LOGGING_CONFIG = None), rather than by django.setup(),
# which first applies Django's DEFAULT_LOGGING. Nothing of that survives this dict (dictConfig
# clears the handlers of the "django" logger it names and of that logger's children), but
# applying it builds the mail_admins handler, whose error reporter imports Django's debug views
# and template filters: 5-10 ms of every process's start.
LOGGING_CONFIG = None
logging.config.dictConfig(LOGGING)

# Content-Security-Policy (Django's own, django.middleware.csp): only this site's own files run
# or style a page. No inline script is allowed at all; the templates' few <style> blocks carry
# the request's nonce, and no element has a style attribute. Images may be data: URIs (the
# admin's and the API docs' stylesheets draw their icons so). Nothing may frame a page
# (clickjacking), post a form elsewhere, or change the base URL links resolve against.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- Detection Destinations --------------------------------------------------------------

# Fernet keys, newest first: the first encrypts, all decrypt (like SECRET_KEY_FALLBACKS).
# Validated by a system check rather than here, so a bad value is a readable error.
FIELD_ENCRYPTION_KEYS = [
    key for key in secret("FIELD_ENCRYPTION_KEYS", default="").split(",") if key
]

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

# GET /metrics (Prometheus) asks for this bearer token when it is set; empty leaves it open, as
# /healthz is. It is compared as a hash in constant time and never logged.
METRICS_TOKEN = secret("METRICS_TOKEN", default="")

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

# --- Signing in (design §8): throttled sign-ins, a second factor for staff -----------------
# django-axes 8.3 (Jazzband; declares Django 4.2 to 6.0, and this suite passes with it on 6.1 and
# Python 3.13) counts failed sign-ins in the database, so a lock holds across gunicorn workers
# and restarts; its [ipware] extra reads the client address behind a proxy. django-otp 1.7 gives
# the second factor: TOTP devices, single-use recovery codes (static tokens), a middleware that
# marks a session verified, and its own throttling of wrong codes. It plugs into the admin we
# already run; django-allauth's MFA would bring its own account flow and templates beside it.
INSTALLED_APPS += [
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
]
# The OTP middleware reads the session after authentication; axes' middleware turns its
# lockout into the locked page, so it goes last.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "django_otp.middleware.OTPMiddleware",
)
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
# Axes' backend comes first: it refuses a locked user and address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Five wrong passwords for one user from one address lock that pair (not the user everywhere,
# which would let anyone lock an on-call admin out) for SIGNIN_COOLOFF_MINUTES after the last.
AXES_FAILURE_LIMIT = env.int("SIGNIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("SIGNIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# A right password clears the count: five wrong in a row lock, not five typos in a month.
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "destinations.admin.signin.locked_response"
# Axes logs the username and address of every failure and lockout, so an operator knows what to
# unlock; it never logs the password (it masks the password field wherever it records a form).
AXES_SENSITIVE_PARAMETERS = []
# Not verbose: no "AXES: BEGIN" line at the start of every command; the lines about sign-ins
# still name the username and address (the lockout parameters).
AXES_VERBOSE = False
# The client's address: REMOTE_ADDR, unless a TLS proxy sits in front (BEHIND_TLS_PROXY). Then
# X-Forwarded-For, read by django-ipware, only when it holds exactly the one address that proxy
# wrote (proxy count 0: no further proxies listed); a header that a client filled in itself
# arrives with more and is ignored, and REMOTE_ADDR (the proxy) is used instead.
if env.bool("BEHIND_TLS_PROXY", default=False):
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    AXES_IPWARE_PROXY_COUNT = 0
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# Staff must give a TOTP code (or a recovery code) after the password. Off by default so
# `make run` works without a phone; `check --deploy` warns while it is off (project.W010).
ADMIN_MFA_REQUIRED = env.bool("ADMIN_MFA_REQUIRED", default=False)
OTP_TOTP_ISSUER = PRODUCT_NAME
# An admin who may edit devices in django-otp's admin still never sees another user's secret.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# The web tier (the Procfile's gunicorn; project/web_worker.py). WEB_WORKERS and WEB_THREADS are
# read by the Procfile itself. A connection whose client sends nothing for this long is dropped
# (a half-sent body reaches the view as unreadable), so a silent client frees its thread.
WEB_READ_TIMEOUT_SECONDS = env.float("WEB_READ_TIMEOUT_SECONDS", default=10.0)
# Retention (design §12): finished deliveries older than this many days are pruned, daily by the
# worker or by `manage.py prune_deliveries`; unfinished ones never are. Daily rollups keep the
# health page's history beyond it.
DELIVERY_RETENTION_DAYS = env.int("DELIVERY_RETENTION_DAYS", default=90)

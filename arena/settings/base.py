"""Settings shared by every environment; each value comes from the environment."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

_DEVELOPMENT_SECRET_KEY = "arena-development-only-key-never-use-in-production-8d1f0c2b7e"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. (Production is the default settings; "
            "for development use `make run` or DJANGO_SETTINGS_MODULE=arena.settings.local.)"
        )
    SECRET_KEY = _DEVELOPMENT_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "axes",
    "core",
    "trading",
    "risk",
    "monitoring",
    "signals",
    "dashboard",
    "paper",
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
    # Last, as django-axes requires: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "arena.urls"
WSGI_APPLICATION = "arena.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE transactions take the write
    # lock up front so two writers queue on the busy timeout instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FIXTURE_DIRS = [BASE_DIR / "fixtures"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Login: failed attempts throttled, sessions of hours -----------------------------------
# django-axes counts failed logins per user name and client address; past the limit that pair
# is refused (HTTP 429, even with the right password) until the cool-off has passed. Behind a
# proxy every client shares the proxy's address, so the lock is then per user name in effect;
# `python manage.py axes_reset` lifts every lock at once.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# An admin that can close every position stays signed in for hours, not Django's two weeks.
SESSION_COOKIE_AGE = int(env.float("SESSION_HOURS", default=8) * 3600)
if SESSION_COOKIE_AGE < 60:
    raise ImproperlyConfigured("SESSION_HOURS must be at least one minute (e.g. 8 or 0.5).")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (strict unless DEBUG) ---------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Error pages and e-mails hide passwords inside URLs too (REDIS_URL, DATABASE_URL, ...).
DEFAULT_EXCEPTION_REPORTER = "arena.redaction.UrlSecretsExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "arena.redaction.UrlSecretsReporterFilter"
# Trust a proxy's scheme header only when told to: a client that reaches the app directly could
# otherwise claim https. Heroku-style routers set X-Forwarded-Proto and overwrite the client's.
_PROXY_SSL_HEADER = env.str("SECURE_PROXY_SSL_HEADER", default="")
if _PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    # Both reach beyond this app (every subdomain; browsers' built-in lists, slow to leave):
    # the domain's owner opts in. Django's deploy check warns while they are off; that warning
    # is this decision, so it is silenced for exactly the setting left off.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SILENCED_SYSTEM_CHECKS = [
        *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
    ]
    SECURE_REFERRER_POLICY = "same-origin"

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_DIR = Path(env.str("CELERY_BROKER_DIR", default=str(BASE_DIR / "var" / "broker")))
# rediss:// (TLS): the server's certificate is verified unless REDIS_TLS_VERIFY=0, for the hosted
# Redis offers whose certificates cannot be verified (self-signed): that trusts the network.
REDIS_TLS_VERIFY = env.bool("REDIS_TLS_VERIFY", default=True)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    if REDIS_URL.startswith("rediss://"):
        CELERY_BROKER_USE_SSL = {
            "ssl_cert_reqs": ssl.CERT_REQUIRED if REDIS_TLS_VERIFY else ssl.CERT_NONE
        }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = True
else:
    # Embedded broker: kombu's filesystem transport needs no server, one machine only; ours
    # (arena/broker.py) writes each message atomically.
    CELERY_BROKER_URL = "arenafs://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
    # The filesystem transport has no fanout exchange for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    # It also needs its folders before the first message, in every process that sends one.
    for _folder in ("queue", "control"):
        (CELERY_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Django's LOGGING (stdout, one format) applies in the worker too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = "default"
# Separate queues so a slow cycle or LLM call never delays the 5 s guard.
CELERY_TASK_ROUTES = {
    "trading.tasks.guard_pass_task": {"queue": "guard"},
    "trading.tasks.trade_cycle_task": {"queue": "cycles"},
    "monitoring.tasks.sentinel_pass_task": {"queue": "sentinel"},
    "monitoring.tasks.*": {"queue": "sentinel"},
    "dashboard.tasks.*": {"queue": "sentinel"},
}
CELERY_WORKER_QUEUES = "default,guard,cycles,sentinel"
# Declared here, so a worker started without --queues (as Celery's documentation starts one)
# consumes every queue of the arena instead of only "default".
# Each queue on its own exchange and routing key, as Celery creates a queue it was only named.
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in CELERY_WORKER_QUEUES.split(",")
)

# --- Exchange -------------------------------------------------------------------------------
EXCHANGE = env.str("EXCHANGE", default="paper")
if EXCHANGE not in {"paper", "binance"}:
    raise ImproperlyConfigured(f"EXCHANGE must be 'paper' or 'binance', not {EXCHANGE!r}.")
PAPER_EXCHANGE_URL = env.str("PAPER_EXCHANGE_URL", default="http://127.0.0.1:8700")
# The paper exchange's user data stream (WebSocket root, ccxt's urls["api"]["ws"]["linear"]).
PAPER_STREAM_URL = env.str("PAPER_STREAM_URL", default="ws://127.0.0.1:8701/ws")
PAPER_API_KEY = env.str("PAPER_API_KEY", default="arena-paper-key")
PAPER_API_SECRET = env.str("PAPER_API_SECRET", default="arena-paper-secret")
BINANCE_API_KEY = env.str("BINANCE_API_KEY", default="")
BINANCE_API_SECRET = env.str("BINANCE_API_SECRET", default="")
BINANCE_DEMO = env.bool("BINANCE_DEMO", default=False)
EXCHANGE_TIMEOUT_SECONDS = env.float("EXCHANGE_TIMEOUT_SECONDS", default=10.0)
# Longest time one exchange call may spend retrying temporary errors.
EXCHANGE_RETRY_MAX_SECONDS = env.float("EXCHANGE_RETRY_MAX_SECONDS", default=20.0)
# Request weight per minute the bot allows itself (Binance's IP limit is 2,400).
EXCHANGE_WEIGHT_BUDGET_1M = env.int("EXCHANGE_WEIGHT_BUDGET_1M", default=2000)

# --- Alerts and LLM -------------------------------------------------------------------------
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_CHAT_ID = env.str("TELEGRAM_CHAT_ID", default="")
TELEGRAM_API_URL = env.str("TELEGRAM_API_URL", default="https://api.telegram.org")
# Chats whose messages the Telegram console obeys (comma-separated ids); empty: TELEGRAM_CHAT_ID.
TELEGRAM_CONSOLE_CHAT_IDS = env.list("TELEGRAM_CONSOLE_CHAT_IDS", default=[])
LLM_API_URL = env.str("LLM_API_URL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")

# --- Logging: one readable line per event, to stdout ----------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {
            "()": "arena.redaction.UrlSecretsFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "ccxt": {"level": "WARNING"},
        # One line per task received/succeeded and per beat tick repeats every 5 s: the guard
        # and the order path log what they do themselves.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # Its start-up banner on every command; lockouts are warnings and still show.
        "axes": {"level": "WARNING"},
    },
}

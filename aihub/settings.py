"""Settings, all from the environment.

With no variables at all aihub runs *embedded*: SQLite (WAL) in ``var/``, the in-memory channel layer, and a
Celery worker inside the server process. ``DATABASE_URL``, ``REDIS_URL`` and ``CELERY_BROKER_URL`` scale it out.
Every variable is documented in README.md ("Configuration"). Secrets may also be given as ``NAME_FILE``
(a path whose contents are the value), which is how Docker and Kubernetes secrets arrive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class _SecretFileMapping(environ.FileAwareMapping):
    """Reads ``NAME_FILE`` before ``NAME``, without the trailing newline editors and `echo` leave in files."""

    def __getitem__(self, key: str) -> str:
        value = super().__getitem__(key)
        return value.rstrip("\r\n") if self.env.get(key + "_FILE") else value


class _Env(environ.FileAwareEnv):
    ENVIRON = _SecretFileMapping()


env = _Env()

DEBUG = env.bool("DJANGO_DEBUG", default=True)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])
if DEBUG:
    SECRET_KEY = SECRET_KEY or "insecure-development-key-set-DJANGO_SECRET_KEY-in-production"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]
else:
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set to at least 32 characters "
            "when DJANGO_DEBUG is off."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG is off.")

CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

VAR_DIR = Path(env.str("AIHUB_VAR_DIR", default=str(BASE_DIR / "var")))
# Created here, whatever the configuration: the SQLite file, media and beat's schedule live in it by default, and
# a process started any way (manage.py, daphne, celery) finds it.
VAR_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "channels",
    "aihub.access",
    "aihub.api",
    "aihub.playground",
    "threads",
    "agents",
    "jobs",
    "knowledge",
    # Last, as its documentation asks: stored files leave storage when their row is deleted or replaced, after
    # the commit, however the row goes (a service, a cascade from a thread or a tenant, the admin).
    "django_cleanup.apps.CleanupConfig",
]

MIDDLEWARE = [
    "aihub.api.middleware.RequestIdMiddleware",
    "aihub.api.middleware.ProblemDetailsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "aihub.api.middleware.StaticFilesMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "aihub.api.middleware.ApiResponseHeadersMiddleware",
]

ROOT_URLCONF = "aihub.urls"
ASGI_APPLICATION = "aihub.asgi.application"
WSGI_APPLICATION = "aihub.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------------------

DATABASE_URL = env.str("DATABASE_URL", default="")
# Every SQLite database aihub opens gets these, the embedded one and one named by DATABASE_URL alike. WAL lets the
# server and the worker read while one of them writes; IMMEDIATE takes the write lock at BEGIN so two writers
# queue (up to the timeout) instead of one failing with "database is locked" when it upgrades a read.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
if DATABASE_URL:
    DATABASES: dict[str, dict[str, Any]] = {"default": env.db_url_config(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", default=str(VAR_DIR / "aihub.sqlite3")),
        }
    }
_database = DATABASES["default"]
_database.setdefault("OPTIONS", {})
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["OPTIONS"] = {**SQLITE_OPTIONS, **_database["OPTIONS"]}
    _database["ENGINE"] = "aihub.sqlite"  # Django's, with the process's writers queued on a lock (see there)
elif _database["ENGINE"] == "django.db.backends.postgresql" and env.bool("DATABASE_POOL", default=True):
    # A pool per process (psycopg_pool through Django): a request borrows a connection for each short database
    # call and gives it back, so a server holds at most max_size connections however many requests it serves,
    # and a request that finds the pool empty for `timeout` seconds is answered 503 with Retry-After.
    _database["CONN_MAX_AGE"] = 0  # what Django requires with a pool: the pool keeps connections, not threads
    _database["OPTIONS"]["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT_SECONDS", default=3.0),
        "max_idle": env.float("DATABASE_POOL_MAX_IDLE_SECONDS", default=60.0),
    }
else:
    # Without a pool (DATABASE_POOL=false, e.g. behind PgBouncer; or another database) each thread keeps its own.
    _database.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
_database["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, channel layer, Celery -----------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    # Shared so that throttling counts one client across every web process.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "aihub.layers.SharedMessageChannelLayer"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
# The embedded worker runs inside the server process and consumes the in-memory broker; with a real broker
# separate `celery worker` processes do the work. Tasks are never executed eagerly.
CELERY_EMBEDDED_WORKER = env.bool("CELERY_EMBEDDED_WORKER", default=CELERY_BROKER_URL.startswith("memory://"))
CELERY_EMBEDDED_CONCURRENCY = env.int("CELERY_EMBEDDED_CONCURRENCY", default=2)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    # Retries or fails jobs whose worker vanished, expires overdue jobs, re-sends lost task messages.
    "jobs-janitor": {"task": "jobs.janitor", "schedule": env.float("JOBS_JANITOR_INTERVAL_SECONDS", default=5.0)},
    # Fires due schedules (jobs.schedules); cron ticks are minutes, so a tick every few seconds is on time.
    "jobs-schedules": {
        "task": "jobs.fire_schedules",
        "schedule": env.float("JOBS_SCHEDULES_TICK_SECONDS", default=10.0),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Jobs ------------------------------------------------------------------------------------------------

JOBS_MAX_ATTEMPTS = env.int("JOBS_MAX_ATTEMPTS", default=2)
JOBS_HEARTBEAT_SECONDS = env.float("JOBS_HEARTBEAT_SECONDS", default=2.0)
# Runners beat from a thread of their own (jobs.runner), through slow model calls too: a job whose heartbeat is
# this old has lost its worker, and the janitor (every JOBS_JANITOR_INTERVAL_SECONDS) takes it over.
JOBS_STALE_AFTER_SECONDS = env.int("JOBS_STALE_AFTER_SECONDS", default=10)
JOBS_RESEND_QUEUED_AFTER_SECONDS = env.int("JOBS_RESEND_QUEUED_AFTER_SECONDS", default=120)
# An ended job with an expiry (expires_at: expires_in_seconds, AI-Q's expiry_seconds) has its results (output,
# artifacts) purged by the janitor this long after that expiry; 0 keeps them. The conversation on the thread stays.
JOBS_RESULT_RETENTION_SECONDS = env.int("JOBS_RESULT_RETENTION_SECONDS", default=0)
JOBS_CHUNK_BATCH_SIZE = env.int("JOBS_CHUNK_BATCH_SIZE", default=64)
JOBS_CHUNK_BATCH_SECONDS = env.float("JOBS_CHUNK_BATCH_SECONDS", default=0.1)
JOBS_SOFT_TIME_LIMIT_SECONDS = env.int("JOBS_SOFT_TIME_LIMIT_SECONDS", default=600)
JOBS_TIME_LIMIT_SECONDS = env.int("JOBS_TIME_LIMIT_SECONDS", default=660)
# The largest artifact (file content, or its data as JSON) a job may publish.
JOBS_ARTIFACT_MAX_BYTES = env.int("JOBS_ARTIFACT_MAX_BYTES", default=10 * 1024 * 1024)
# Stateless turns (a message with chat_history): the most messages and JSON bytes a supplied history may have,
# and how long the turn's ephemeral thread keeps its messages and events after its job ended (for a client that
# reconnects to the stream or reads the job) before the janitor purges them.
JOBS_CHAT_HISTORY_MAX_MESSAGES = env.int("JOBS_CHAT_HISTORY_MAX_MESSAGES", default=200)
JOBS_CHAT_HISTORY_MAX_BYTES = env.int("JOBS_CHAT_HISTORY_MAX_BYTES", default=1024 * 1024)
JOBS_STATELESS_RETENTION_SECONDS = env.int("JOBS_STATELESS_RETENTION_SECONDS", default=600)
# How long a job's client_config (sealed in the cache, jobs.credentials) waits for a worker; a job that starts
# later fails asking for the request again. It is deleted as soon as the job ends.
JOBS_CLIENT_CONFIG_TTL_SECONDS = env.int("JOBS_CLIENT_CONFIG_TTL_SECONDS", default=3600)
# Usage accounting and limits (jobs.usage): the currency of catalogue prices, the output tokens a job reserves
# against a limit when it starts, and the share of a limit from which responses carry X-Usage-Warning.
USAGE_CURRENCY = env.str("USAGE_CURRENCY", default="USD")
JOBS_USAGE_RESERVE_TOKENS = env.int("JOBS_USAGE_RESERVE_TOKENS", default=1000)
JOBS_USAGE_WARNING_RATIO = env.float("JOBS_USAGE_WARNING_RATIO", default=0.8)
# How long the model catalogue keeps a provider's model list before asking again (agents.catalogue).
AGENTS_MODEL_LIST_TTL_SECONDS = env.int("AGENTS_MODEL_LIST_TTL_SECONDS", default=300)
AGENTS_MODEL_LIST_TIMEOUT_SECONDS = env.float("AGENTS_MODEL_LIST_TIMEOUT_SECONDS", default=5.0)

# --- Knowledge -------------------------------------------------------------------------------------------

# The embedder of new collections: "local/all-MiniLM-L6-v2" (the bundled model, no network) or
# "openai/<model>" on the OpenAI-compatible endpoint below.
KNOWLEDGE_DEFAULT_EMBEDDER = env.str("KNOWLEDGE_DEFAULT_EMBEDDER", default="local/all-MiniLM-L6-v2")
KNOWLEDGE_OPENAI_BASE_URL = env.str("KNOWLEDGE_OPENAI_BASE_URL", default="https://api.openai.com/v1")
KNOWLEDGE_OPENAI_API_KEY = env.str("KNOWLEDGE_OPENAI_API_KEY", default="")
KNOWLEDGE_MAX_UPLOAD_BYTES = env.int("KNOWLEDGE_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
KNOWLEDGE_EMBED_BATCH_SIZE = env.int("KNOWLEDGE_EMBED_BATCH_SIZE", default=64)
KNOWLEDGE_INGEST_SOFT_TIME_LIMIT_SECONDS = env.int("KNOWLEDGE_INGEST_SOFT_TIME_LIMIT_SECONDS", default=900)
KNOWLEDGE_INGEST_TIME_LIMIT_SECONDS = env.int("KNOWLEDGE_INGEST_TIME_LIMIT_SECONDS", default=960)
# HNSW search breadth on PostgreSQL (pgvector's hnsw.ef_search): higher finds more of the exact top-k, slower.
KNOWLEDGE_HNSW_EF_SEARCH = env.int("KNOWLEDGE_HNSW_EF_SEARCH", default=100)
# Hybrid search runs its vector leg in a small per-process thread pool (on its own database connection) while
# the request's thread runs the keyword leg; false runs them one after the other.
KNOWLEDGE_SEARCH_CONCURRENT_LEGS = env.bool("KNOWLEDGE_SEARCH_CONCURRENT_LEGS", default=True)
KNOWLEDGE_SEARCH_THREADS = env.int("KNOWLEDGE_SEARCH_THREADS", default=4)

# --- Auth ------------------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

OAUTH2_PROVIDER = {
    "SCOPES": {
        "read": "Read the resources your roles allow",
        "write": "Create, change and delete the resources your roles allow",
    },
    "DEFAULT_SCOPES": ["read"],
    "PKCE_REQUIRED": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("OAUTH2_ACCESS_TOKEN_EXPIRE_SECONDS", default=3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env.int("OAUTH2_REFRESH_TOKEN_EXPIRE_SECONDS", default=14 * 24 * 3600),
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"] if not DEBUG else ["http", "https"],
}

# Namespaced settings of aihub itself, read through aihub.conf.aihub_settings (defaults live there).
AIHUB: dict[str, Any] = {
    # External OpenID Connect issuers whose bearer JWTs are accepted, as JSON, e.g.
    # [{"issuer": "https://sso.example.com/realms/acme", "audience": "aihub"}]
    "OIDC_ISSUERS": env.json("AIHUB_OIDC_ISSUERS", default=[]),
    "TOKEN_LAST_USED_RESOLUTION_SECONDS": 60,
    "THROTTLE_RATES": {
        "token": env.str("AIHUB_THROTTLE_TOKEN", default="1200/minute"),
        "ip": env.str("AIHUB_THROTTLE_IP", default="3000/minute"),
    },
    "PAGE_SIZE": 50,
    "MAX_PAGE_SIZE": 1000,
    "MAX_PENDING_REQUESTS": env.int("AIHUB_MAX_PENDING_REQUESTS", default=256),
    # Live streams: a WebSocket without credentials must send its auth frame this soon; SSE comment interval.
    "WS_AUTH_TIMEOUT_SECONDS": env.float("AIHUB_WS_AUTH_TIMEOUT_SECONDS", default=5.0),
    "SSE_KEEPALIVE_SECONDS": env.float("AIHUB_SSE_KEEPALIVE_SECONDS", default=15.0),
    # WebSocket rate limits: frames per connection, connection attempts per client address.
    "WS_FRAME_RATE": env.str("AIHUB_WS_FRAME_RATE", default="120/minute"),
    "WS_CONNECT_RATE": env.str("AIHUB_WS_CONNECT_RATE", default="120/minute"),
    # Files and outbound requests (aihub.outbound): where file_urls may point (comma-separated URL or file://
    # folder prefixes), whether private addresses may be reached, and the limits of uploads and attachments.
    "FILE_URL_ALLOWLIST": env.list("AIHUB_FILE_URL_ALLOWLIST", default=[]),
    "OUTBOUND_ALLOW_PRIVATE_NETWORKS": env.bool("AIHUB_OUTBOUND_ALLOW_PRIVATE_NETWORKS", default=False),
    "OUTBOUND_TIMEOUT_SECONDS": env.float("AIHUB_OUTBOUND_TIMEOUT_SECONDS", default=10.0),
    "FILE_MAX_BYTES": env.int("AIHUB_FILE_MAX_BYTES", default=10 * 1024 * 1024),
    "ATTACHMENT_TEXT_MAX_CHARS": env.int("AIHUB_ATTACHMENT_TEXT_MAX_CHARS", default=20_000),
    # Per-request model credentials (client_config): the base URLs a client may point its job's model calls at.
    "CLIENT_CONFIG_URL_ALLOWLIST": env.list("AIHUB_CLIENT_CONFIG_URL_ALLOWLIST", default=[]),
    # Job webhooks: allowed URL prefixes, the signing key (also as AIHUB_WEBHOOK_SECRET_FILE), attempts.
    "WEBHOOK_URL_ALLOWLIST": env.list("AIHUB_WEBHOOK_URL_ALLOWLIST", default=[]),
    "WEBHOOK_SECRET": env.str("AIHUB_WEBHOOK_SECRET", default=""),
    "WEBHOOK_MAX_ATTEMPTS": env.int("AIHUB_WEBHOOK_MAX_ATTEMPTS", default=6),
    # A2A push notifications are job webhooks carrying the A2A task too (aihub.interop.a2a.push).
    "WEBHOOK_EXTENSIONS": ["aihub.interop.a2a.push.webhook_extension"],
}

# --- API -------------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "aihub.access.authentication.ApiTokenAuthentication",
        "aihub.access.authentication.ExternalJwtAuthentication",
        "aihub.access.authentication.OAuth2Authentication",
        "aihub.access.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["aihub.access.permissions.IsAuthenticatedWithScope"],
    "DEFAULT_THROTTLE_CLASSES": [
        "aihub.api.throttling.TokenRateThrottle",
        "aihub.api.throttling.IpRateThrottle",
    ],
    "DEFAULT_PAGINATION_CLASS": "aihub.api.pagination.EnvelopePagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "aihub.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "aihub.api.problems.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "aihub.api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "aihub API",
    "DESCRIPTION": "Agents, threads, jobs and knowledge of a self-hosted AI agent hub. "
    "Errors are RFC 7807 problem details (application/problem+json); a dependency that is unavailable (database, "
    "Redis, broker) is a 503 with Retry-After naming it. Live events: the SSE routes here, and the WebSocket "
    "/ws/v1/{tenant}/threads/{id}/, which streams from ?last_event_id= as it connects (or, with ?subscribe=manual, "
    "from the first subscribe frame); a subscribe frame on a thread already streaming goes on from the greater of "
    "the last id sent and the one asked for, so no event id is sent twice on one connection.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "knowledge.models.Document.Status",
        "SearchModeEnum": "knowledge.search.MODES",
        # Named, since another "status" field exists (documents) and both would get hash suffixes otherwise.
        "JobStatusEnum": "jobs.models.JobStatus",
    },
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "OAUTH2_FLOWS": ["authorizationCode", "clientCredentials"],
    "OAUTH2_AUTHORIZATION_URL": "/o/authorize/",
    "OAUTH2_TOKEN_URL": "/o/token/",
    "OAUTH2_REFRESH_URL": "/o/token/",
    "OAUTH2_SCOPES": OAUTH2_PROVIDER["SCOPES"],
}

# Bodies larger than this answer 413; file uploads get their own limit with the knowledge API.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("AIHUB_MAX_BODY_BYTES", default=2 * 1024 * 1024)

# --- CORS ------------------------------------------------------------------------------------------------

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(api|openai|o|mcp)/.*$"
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "last-event-id",
    "x-csrftoken",
    "x-request-id",
    "idempotency-key",
    # The OpenAI-compatible API's thread, and the MCP transport's headers (aihub.interop).
    "x-aihub-thread",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    # What the official OpenAI SDKs send with every request, so a browser app using one (dangerouslyAllowBrowser)
    # passes the preflight against /openai/v1/.
    "openai-organization",
    "openai-project",
    "x-stainless-arch",
    "x-stainless-custom-poll-interval",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-poll-helper",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "Deprecation",
    "Sunset",
    "Link",
    "X-Aihub-Thread",
    "X-Aihub-Job",
    "WWW-Authenticate",
    "Mcp-Session-Id",
    "Mcp-Protocol-Version",
]

# --- Security --------------------------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0)

# --- I18N, static ----------------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Logging ---------------------------------------------------------------------------------------------

LOG_LEVEL = env.str("AIHUB_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "aihub.context.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
    },
}

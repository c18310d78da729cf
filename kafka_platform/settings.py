"""Settings for every process, read from the environment (docs/settings.md) with development defaults."""

from __future__ import annotations

from pathlib import Path

import environ

from core.logs import logging_config
from kafka_platform.production import refuse_unsafe_production_settings

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Development values, refused at the end of this file while DEBUG is off.
DEV_SECRET_KEY = "django-insecure-dev-only-kafka-platform"  # noqa: S105
DEV_WEBHOOK_SIGNING_SECRET = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtMzJieXRlcyE="  # noqa: S105

# Off unless set: a forgotten variable must not serve tracebacks with local variables and SQL.
# `make run` and the test suite turn it on.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEV_SECRET_KEY)
# Previous keys, still accepted for existing sessions and signatures while a new key rolls out.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"] if DEBUG else [])

INSTALLED_APPS = [
    # django.contrib.admin with the platform's site (its start page shows what needs attention).
    "core.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "core",  # after django_celery_beat: core.admin replaces its PeriodicTask admin
    "bridge",
    "payments",
    "ledger",
    "notifications",
    "audit",
    "orders",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Outermost of ours: the request's span covers everything the request does.
    "core.tracing.TracingMiddleware",
    "core.correlation.CorrelationIdMiddleware",
    "core.problems.ProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, the API docs' UI) from the web process itself, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "kafka_platform.urls"
WSGI_APPLICATION = "kafka_platform.wsgi.application"
ASGI_APPLICATION = "kafka_platform.asgi.application"

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

DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/kafka_platform"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
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

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise also finds static files in the apps, so a process started without collectstatic
# (development, the tests' production-mode gunicorn) still serves the admin and API docs.
WHITENOISE_USE_FINDERS = True

# --- Celery (Redis broker) --------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
# Long waits live in the database, never in countdowns: a countdown longer than this timeout
# would be redelivered by Redis while it is still waiting (celery#2599).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
}
# The bridge pauses Kafka partitions while a Celery queue holds more than this many tasks.
BRIDGE_MAX_QUEUE_DEPTH = env.int("BRIDGE_MAX_QUEUE_DEPTH", default=5000)
# Micro-batching: the events of one route in a poll (across partitions, each partition's order
# kept) go to the worker as tasks of up to BRIDGE_BATCH_MAX events; while a backlog shows (a poll
# brought several records, or a worker queue is not empty) the bridge waits up to
# BRIDGE_BATCH_LINGER_MS for batches to fill. An event alone with idle workers goes at once.
# BRIDGE_BATCH_MAX=1 turns batching off.
BRIDGE_BATCH_MAX = env.int("BRIDGE_BATCH_MAX", default=100)
BRIDGE_BATCH_LINGER_MS = env.int("BRIDGE_BATCH_LINGER_MS", default=10)
# Natural batching: while the workers hold at least BRIDGE_MAX_IN_FLIGHT tasks (queued, prefetched
# or running: about the workers' concurrency), the bridge keeps gathering events for up to
# BRIDGE_BATCH_LINGER_MAX_MS in all, so batches grow with the load; 0 turns it off (batches then
# linger BRIDGE_BATCH_LINGER_MS only).
# Off by default until measured on a quiet machine against the same run with it off (see
# docs/performance.md): with notification tasks always in flight the signal says "busy" at 50/s.
BRIDGE_MAX_IN_FLIGHT = env.int("BRIDGE_MAX_IN_FLIGHT", default=0)
BRIDGE_BATCH_LINGER_MAX_MS = env.int("BRIDGE_BATCH_LINGER_MAX_MS", default=100)
# Seconds between the bridge's listings of the topics it consumes: a new audit.* topic is joined
# within about this long, without a restart (bridge/subscription.py).
BRIDGE_TOPIC_REFRESH_S = env.float("BRIDGE_TOPIC_REFRESH_S", default=10.0)

# --- Operations: probes, Flower ---------------------------------------------------------------
# /metrics and /healthz of the bridge and of each worker's main process (0 disables).
BRIDGE_METRICS_PORT = env.int("BRIDGE_METRICS_PORT", default=9400)
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=9401)
# /healthz of bridge and worker answers 503 once their loop has not turned for this long.
HEALTH_MAX_SILENCE_S = env.float("HEALTH_MAX_SILENCE_S", default=60.0)
# A partition whose next record the bridge has failed to hand on for this long is "stuck": its
# /healthz and the web /health answer 503 naming it, and operators may skip the record (admin).
BRIDGE_STUCK_AFTER_S = env.float("BRIDGE_STUCK_AFTER_S", default=60.0)
# A record whose value is larger than this is not handed to Celery (Redis): it goes to the DLQ as
# a reference, its whole value kept in PostgreSQL (bridge.OversizedRecord).
BRIDGE_MAX_HANDOFF_BYTES = env.int("BRIDGE_MAX_HANDOFF_BYTES", default=10 * 1024 * 1024)
# The producers' max_request_size; a dead letter larger than this goes to the DLQ as a reference.
KAFKA_MAX_REQUEST_BYTES = env.int("KAFKA_MAX_REQUEST_BYTES", default=11 * 1024 * 1024)
# Web /health: `degraded` (200) when a partition's consumer lag is over HEALTH_LAG_DEGRADED, or
# the oldest unsent outbox row is older than HEALTH_OUTBOX_DEGRADED_S; `down` (503) when that row
# is older than HEALTH_OUTBOX_DOWN_S.
HEALTH_LAG_DEGRADED = env.int("HEALTH_LAG_DEGRADED", default=1000)
HEALTH_OUTBOX_DEGRADED_S = env.float("HEALTH_OUTBOX_DEGRADED_S", default=60.0)
HEALTH_OUTBOX_DOWN_S = env.float("HEALTH_OUTBOX_DOWN_S", default=600.0)
# "user:password" pairs, comma-separated; read by flowerconfig.py, required when DEBUG is off.
FLOWER_BASIC_AUTH = env.list("FLOWER_BASIC_AUTH", default=[])

# --- Kafka ------------------------------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = env.str("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092")
KAFKA_SECURITY_PROTOCOL = env.str("KAFKA_SECURITY_PROTOCOL", default="PLAINTEXT")
KAFKA_SASL_MECHANISM = env.str("KAFKA_SASL_MECHANISM", default=None)
KAFKA_SASL_USERNAME = env.str("KAFKA_SASL_USERNAME", default=None)
KAFKA_SASL_PASSWORD = env.str("KAFKA_SASL_PASSWORD", default=None)
KAFKA_SSL_CAFILE = env.str("KAFKA_SSL_CAFILE", default=None)
# Client certificate and key, for clusters that authenticate clients by TLS (mutual TLS).
KAFKA_SSL_CERTFILE = env.str("KAFKA_SSL_CERTFILE", default=None)
KAFKA_SSL_KEYFILE = env.str("KAFKA_SSL_KEYFILE", default=None)
KAFKA_CONSUMER_GROUP = env.str("KAFKA_CONSUMER_GROUP", default="kafka-platform-bridge")
# ~6 s lets a consumer group form in ~3 s instead of ~25 s; a crashed bridge's partitions move
# to a live one within this time.
KAFKA_SESSION_TIMEOUT_MS = env.int("KAFKA_SESSION_TIMEOUT_MS", default=6000)
# Topics as `kafka_topics --create` makes them and `--check` expects them. Production: three
# replicas, and an acks=all write needs two of them in sync, so one broker's loss loses no
# acknowledged record and stops no writes. Development: the embedded single broker. The in-sync
# default never exceeds the replication factor; a value set above it is refused (production.py).
KAFKA_TOPIC_REPLICATION_FACTOR = env.int("KAFKA_TOPIC_REPLICATION_FACTOR", default=1 if DEBUG else 3)
KAFKA_TOPIC_MIN_INSYNC_REPLICAS = env.int(
    "KAFKA_TOPIC_MIN_INSYNC_REPLICAS", default=1 if DEBUG else min(2, KAFKA_TOPIC_REPLICATION_FACTOR)
)
# Production refuses topics with a single replica unless this says the deployment accepts it.
PLATFORM_ALLOW_UNREPLICATED_KAFKA = env.bool("PLATFORM_ALLOW_UNREPLICATED_KAFKA", default=False)

# --- Who may produce what on Kafka (bridge.signing, bridge.admission) ---------------------------
# Signs every record the platform publishes; the bridge believes a record's actor, and acts on
# gated or platform topics, only when this signature verifies. Its own key: whoever holds the web
# secret, the checkpoint key or the webhook secret must not be able to speak as the platform.
DEV_PLATFORM_EVENT_KEY = "dev-only-platform-event-key"  # noqa: S105 - development only
PLATFORM_EVENT_KEY = env.str("PLATFORM_EVENT_KEY", default=DEV_PLATFORM_EVENT_KEY if DEBUG else "")
# The key before a rotation: records it signed (still on the topics, or dead-lettered) verify.
PLATFORM_EVENT_KEY_PREVIOUS = env.str("PLATFORM_EVENT_KEY_PREVIOUS", default="")
# Gated input topics whose unsigned records act as the integration `kafka:<topic>` (only where
# the broker's ACLs admit trusted producers alone to them). Empty: nothing unsigned is trusted.
KAFKA_TRUSTED_INPUTS = env.list("KAFKA_TRUSTED_INPUTS", default=[])
# Production refuses Kafka over PLAINTEXT unless this says the deployment accepts it.
PLATFORM_ALLOW_INSECURE_KAFKA = env.bool("PLATFORM_ALLOW_INSECURE_KAFKA", default=False)

# --- Domain settings --------------------------------------------------------------------------
PAYMENTS_SUPPORTED_CURRENCIES = env.list(
    "PAYMENTS_SUPPORTED_CURRENCIES", default=["USD", "EUR", "GBP", "JPY", "CHF", "BHD"]
)
PAYMENTS_MAX_AMOUNT = env.str("PAYMENTS_MAX_AMOUNT", default="1000000")
PAYMENTS_GATEWAY = env.str("PAYMENTS_GATEWAY", default="payments.gateway.SimulatedGateway")
PAYMENTS_GATEWAY_MAX_RETRIES = env.int("PAYMENTS_GATEWAY_MAX_RETRIES", default=3)
# Seconds of the first retry after a gateway timeout; doubles each time, with full jitter.
PAYMENTS_GATEWAY_RETRY_BACKOFF = env.float("PAYMENTS_GATEWAY_RETRY_BACKOFF", default=2.0)
PAYMENTS_GATEWAY_RETRY_BACKOFF_MAX = env.float("PAYMENTS_GATEWAY_RETRY_BACKOFF_MAX", default=60.0)
# The gateway's circuit opens after this many consecutive timeouts and half-opens after RESET_S.
# A batch of payments charges this many at a time at the gateway (calls are I/O: a real PSP
# answers in hundreds of milliseconds). Each thread keeps its own database connection.
PAYMENTS_GATEWAY_CONCURRENCY = env.int("PAYMENTS_GATEWAY_CONCURRENCY", default=4)
PAYMENTS_GATEWAY_BREAKER_THRESHOLD = env.int("PAYMENTS_GATEWAY_BREAKER_THRESHOLD", default=5)
PAYMENTS_GATEWAY_BREAKER_RESET_S = env.float("PAYMENTS_GATEWAY_BREAKER_RESET_S", default=30.0)
# Fraud rules run in this order; the first hit fails the payment with fraud_suspected.
PAYMENTS_FRAUD_RULES = env.list(
    "PAYMENTS_FRAUD_RULES",
    default=[
        "payments.fraud.BlockedCountryRule",
        "payments.fraud.BlockedBinRule",
        "payments.fraud.AmountThresholdRule",
        "payments.fraud.VelocityRule",
    ],
)
PAYMENTS_FRAUD_VELOCITY_MAX = env.int("PAYMENTS_FRAUD_VELOCITY_MAX", default=20)
PAYMENTS_FRAUD_VELOCITY_WINDOW_S = env.int("PAYMENTS_FRAUD_VELOCITY_WINDOW_S", default=3600)
PAYMENTS_FRAUD_AMOUNT_THRESHOLD = env.str("PAYMENTS_FRAUD_AMOUNT_THRESHOLD", default="50000")
PAYMENTS_FRAUD_BLOCKED_COUNTRIES = env.list("PAYMENTS_FRAUD_BLOCKED_COUNTRIES", default=[])
PAYMENTS_FRAUD_BLOCKED_BINS = env.list("PAYMENTS_FRAUD_BLOCKED_BINS", default=[])

# --- Payments against the ledger (reconciliation) ------------------------------------------------
# A capture or refund younger than this many seconds may still have its posting in flight (outbox,
# Kafka, ledger worker): the reconciliation does not call its missing posting a difference yet.
PAYMENTS_RECONCILIATION_GRACE_S = env.int("PAYMENTS_RECONCILIATION_GRACE_S", default=900)

# Currencies the ledger posts in; a posting in another fails with validation_error.
LEDGER_SUPPORTED_CURRENCIES = env.list("LEDGER_SUPPORTED_CURRENCIES", default=PAYMENTS_SUPPORTED_CURRENCIES)

# --- Audit and compliance ---------------------------------------------------------------------
# A payment request of at least this amount (in its own currency) raises high_value_transaction.
COMPLIANCE_HIGH_VALUE_THRESHOLD = env.str("COMPLIANCE_HIGH_VALUE_THRESHOLD", default="10000")
# More than N payment requests of one user within the window raise velocity.
COMPLIANCE_VELOCITY_MAX_PAYMENTS = env.int("COMPLIANCE_VELOCITY_MAX_PAYMENTS", default=10)
COMPLIANCE_VELOCITY_WINDOW_SECONDS = env.int("COMPLIANCE_VELOCITY_WINDOW_SECONDS", default=3600)
# N failed authentications of one username (or client address) within the window raise
# repeated_auth_failure.
COMPLIANCE_AUTH_FAILURE_THRESHOLD = env.int("COMPLIANCE_AUTH_FAILURE_THRESHOLD", default=5)
COMPLIANCE_AUTH_FAILURE_WINDOW_SECONDS = env.int("COMPLIANCE_AUTH_FAILURE_WINDOW_SECONDS", default=900)
# The rules each audit record is offered to (dotted paths of classes, see audit/rules.py).
COMPLIANCE_RULES = env.list(
    "COMPLIANCE_RULES",
    default=[
        "audit.rules.HighValueTransaction",
        "audit.rules.Velocity",
        "audit.rules.RepeatedAuthFailure",
    ],
)
# Signs the chain's checkpoints and the archive manifests (HMAC-SHA256). Changing it makes the
# existing signatures unverifiable, so set it once, apart from DJANGO_SECRET_KEY, in production:
# whoever holds the secret key must not be able to re-sign a rewritten log.
DEV_AUDIT_CHECKPOINT_KEY = "dev-only-audit-checkpoint-key"  # noqa: S105 - development only
AUDIT_CHECKPOINT_KEY = env.str("AUDIT_CHECKPOINT_KEY", default=DEV_AUDIT_CHECKPOINT_KEY if DEBUG else "")
# Beat signs a checkpoint every 60 s; records left unsigned for ten times that make audit_verify fail.
AUDIT_CHECKPOINT_MAX_AGE_S = env.int("AUDIT_CHECKPOINT_MAX_AGE_S", default=600)
# Anchoring the chain's head: besides beat's minute, a checkpoint is requested as soon as this
# many records were appended since the last multiple of it, so no more than about this many
# records (or a minute's) are ever unsigned. The scheduled verification compares the database's
# checkpoints with audit.checkpoints; one in the database but not on the topic counts only once
# it was signed this many seconds ago (the relay publishes it within seconds).
AUDIT_CHECKPOINT_EVERY_RECORDS = env.int("AUDIT_CHECKPOINT_EVERY_RECORDS", default=1000)
AUDIT_CHECKPOINT_PUBLISH_GRACE_S = env.int("AUDIT_CHECKPOINT_PUBLISH_GRACE_S", default=300)
# Records whose events occurred longer ago are archived, then purged (2557 days: 7 years).
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=2557)
AUDIT_RETENTION_BATCH_SIZE = env.int("AUDIT_RETENTION_BATCH_SIZE", default=10000)
# Where archive segments and their manifests are written (a durable volume shared by workers).
AUDIT_ARCHIVE_DIR = env.path("AUDIT_ARCHIVE_DIR", default=BASE_DIR / "var" / "audit-archive")

# --- Email / webhooks (docs/settings.md) ------------------------------------------------------
EMAIL_HOST = env.str("EMAIL_HOST", default="")
# An email service provider is a configuration change: EMAIL_BACKEND=anymail.backends.<esp>.EmailBackend
# with its ANYMAIL_<ESP>_<SETTING> variables (e.g. ANYMAIL_SENDGRID_API_KEY).
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): value for name, value in env.ENVIRON.items() if name.startswith("ANYMAIL_")
}
# Seconds; without a timeout a hung SMTP server would hold a delivery in `sending` forever.
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=30.0)
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="payments@kafka-platform.local")
WEBHOOK_SIGNING_SECRET = env.str("WEBHOOK_SIGNING_SECRET", default=DEV_WEBHOOK_SIGNING_SECRET)
WEBHOOK_ALLOWED_HOSTS = env.list("WEBHOOK_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])

# --- Notifications ----------------------------------------------------------------------------
NOTIFICATIONS_DEFAULT_LOCALE = env.str("NOTIFICATIONS_DEFAULT_LOCALE", default="en")
# SMS and push providers: dotted paths of classes in notifications/providers/.
NOTIFICATIONS_SMS_PROVIDER = env.str(
    "NOTIFICATIONS_SMS_PROVIDER", default="notifications.providers.console.ConsoleSmsProvider"
)
NOTIFICATIONS_PUSH_PROVIDER = env.str(
    "NOTIFICATIONS_PUSH_PROVIDER", default="notifications.providers.console.ConsolePushProvider"
)
NOTIFICATIONS_PROVIDER_TIMEOUT_S = env.float("NOTIFICATIONS_PROVIDER_TIMEOUT_S", default=10.0)
TWILIO_BASE_URL = env.str("TWILIO_BASE_URL", default="https://api.twilio.com")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
SMS_FROM_NUMBER = env.str("SMS_FROM_NUMBER", default="")
EXPO_PUSH_URL = env.str("EXPO_PUSH_URL", default="https://exp.host/--/api/v2/push/send")
EXPO_ACCESS_TOKEN = env.str("EXPO_ACCESS_TOKEN", default="")
# Seconds after each failed attempt before the next; the list's length is the number of retries.
NOTIFICATIONS_RETRY_SCHEDULE = env.list(
    "NOTIFICATIONS_RETRY_SCHEDULE", cast=float, default=[10.0, 60.0, 300.0, 1800.0, 7200.0]
)
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE", cast=float, default=[5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0]
)
WEBHOOK_TIMEOUT_S = env.float("WEBHOOK_TIMEOUT_S", default=10.0)
# An endpoint is disabled when this many notifications in a row failed after their whole schedule.
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=5)
# Circuit breaker per provider: open after this many provider faults in a row, probe after the cooldown.
NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD = env.int("NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD", default=5)
NOTIFICATIONS_BREAKER_COOLDOWN_S = env.float("NOTIFICATIONS_BREAKER_COOLDOWN_S", default=30.0)
# Token bucket per channel and recipient: a burst of this many, refilled at this rate.
NOTIFICATIONS_RATE_LIMIT_BURST = env.int("NOTIFICATIONS_RATE_LIMIT_BURST", default=10)
NOTIFICATIONS_RATE_LIMIT_PER_MINUTE = env.float("NOTIFICATIONS_RATE_LIMIT_PER_MINUTE", default=20.0)
NOTIFICATIONS_REDIS_URL = env.str("NOTIFICATIONS_REDIS_URL", default=CELERY_BROKER_URL)
# Email, SMS and push notifications handed to workers together go in tasks of at most this many:
# one transaction starts their attempts and one records their outcomes (webhooks go one by one).
NOTIFICATIONS_DELIVERY_BATCH = env.int("NOTIFICATIONS_DELIVERY_BATCH", default=20)
# A queued delivery handed to Celery is taken back by the beat dispatcher if not started by then.
NOTIFICATIONS_DISPATCH_LEASE_S = env.float("NOTIFICATIONS_DISPATCH_LEASE_S", default=120.0)
# An attempt still `sending` this long after it started belongs to a lost worker (more than the
# task time limit): the dispatcher resolves it (see docs/notifications.md).
NOTIFICATIONS_SENDING_STUCK_AFTER_S = env.float("NOTIFICATIONS_SENDING_STUCK_AFTER_S", default=330.0)

# --- Orders and inventory --------------------------------------------------------------------
# A reservation whose payment has not answered within this many seconds is released and its
# order cancelled (payment_timeout) by the beat task `orders.expire_reservations`.
ORDERS_RESERVATION_TTL_S = env.int("ORDERS_RESERVATION_TTL_S", default=900)

# --- HTTP API ---------------------------------------------------------------------------------
# A request body over this many bytes is refused with 413 before any view reads it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
# The shared cache: API rate-limit counters, so that every web process counts the same requests.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("CACHE_URL", default=CELERY_BROKER_URL),
        "KEY_PREFIX": "kp-cache",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
# Atomic API rate limits (core/throttles.py): the Redis holding each client's counted writes;
# empty: the shared cache's Redis above.
API_RATE_LIMIT_REDIS_URL = env.str("API_RATE_LIMIT_REDIS_URL", default="")


REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ProblemAutoSchema",
    # Numbers in JSON bodies become Decimals: money never passes through a float.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.DecimalJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Writes are rate limited per client; reads are not (429 with Retry-After).
    "DEFAULT_THROTTLE_CLASSES": ["core.throttles.WriteRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"writes": env.str("API_WRITE_RATE", default="600/min")},
    "COERCE_DECIMAL_TO_STRING": True,
    # Every error is RFC 9457 problem+json (core/problems.py); failed authentications
    # also become audit records (repeated_auth_failure).
    "EXCEPTION_HANDLER": "audit.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "ENUM_NAME_OVERRIDES": {
        "PaymentStatusEnum": "payments.models.PaymentStatus",
        "RefundStatusEnum": "payments.models.RefundStatus",
        "NotificationStatusEnum": "notifications.models.NotificationStatus",
        "DeliveryAttemptStatusEnum": "notifications.models.AttemptStatus",
        "LedgerTransactionKindEnum": "ledger.kinds.TransactionKind",
        "WebhookEndpointKindEnum": "notifications.models.EndpointKind",
        "OrderStatusEnum": "orders.models.OrderStatus",
    },
    # 3.1: the request bodies are the events' pydantic models, whose optional fields are
    # `anyOf [..., {"type": "null"}]` (JSON Schema 2020-12, which OpenAPI 3.0 lacks).
    "OAS_VERSION": "3.1.0",
    # The docs' UI from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TITLE": "kafka-platform API",
    "DESCRIPTION": (
        "Payments, ledger, notifications, audit, and orders with inventory. Errors are RFC 9457 "
        "problem+json; who may do what is in docs/api.md."
    ),
    "VERSION": "1.0.0",
    # One group per domain, payments first (kafka_platform/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "kafka_platform.openapi.tag_by_domain",
    ],
}

# --- Logging ----------------------------------------------------------------------------------
# One JSON object per line in every process (`console` for a human-readable form while developing).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)

# --- Traces (core.tracing, docs/operations.md "Traces") --------------------------------
# OTLP/HTTP export when OpenTelemetry's own variable is set (the exporter reads it and its
# OTEL_EXPORTER_OTLP_* companions); OTEL_SDK_DISABLED=true turns export off whatever is set.
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACING_OTLP = not env.bool("OTEL_SDK_DISABLED", default=False) and any(
    env.str(name, default="") for name in OTLP_ENDPOINT_VARIABLES
)
# A debugging aid: every process appends its finished spans to this file as JSON lines.
TRACING_EXPORT_FILE = env.str("TRACING_EXPORT_FILE", default="")

# --- Poison tasks (bridge.poison) --------------------------------------------------------------
# Tests only, and ignored unless DEBUG: an event whose data.metadata.killWorker equals this makes
# its task kill its own worker process, to prove a task whose worker dies under it every time is
# dead-lettered after 3 starts.
TASK_TEST_KILL_MARKER = env.str("TASK_TEST_KILL_MARKER", default="") if DEBUG else ""

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # Prometheus and orchestrator probes talk plain HTTP to the process itself: no redirect.
    SECURE_REDIRECT_EXEMPT = [r"^metrics$", r"^health$", r"^ready$", r"^live$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Operations access: the metrics token, the admin login lockout ------------------------------
# Bearer token that /metrics (web, bridge, workers) and the web's detailed /health require while
# DEBUG is off (production refuses to start without it); /ready, /live and /healthz stay open.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# django-axes: after AXES_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair's logins are refused for AXES_COOLOFF_HOURS (or until `manage.py axes_reset`). The address
# is REMOTE_ADDR: a client-supplied X-Forwarded-For would let a guesser pick a fresh address per
# try. API token authentication never passes through it.
# Before `core`: core.admin replaces axes' AccessAttempt admin (its cleanup action had no permission).
INSTALLED_APPS.insert(INSTALLED_APPS.index("core"), "axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = [
    # First: it refuses a locked-out username and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
# Not verbose: every process (each `manage.py` by hand too) would log its "AXES: BEGIN" banner;
# a lockout is still logged, naming the username and address it locked.
AXES_VERBOSE = False

# --- Refusals of a production start (last: they read every final value) ------------------------
# Console email, SMS and push providers are accepted outside DEBUG only when asked for (a staging
# deployment without real providers, say).
PLATFORM_ALLOW_CONSOLE_PROVIDERS = env.bool("PLATFORM_ALLOW_CONSOLE_PROVIDERS", default=False)
if not DEBUG:
    refuse_unsafe_production_settings(
        globals(),
        dev_secret_key=DEV_SECRET_KEY,
        dev_webhook_secret=DEV_WEBHOOK_SIGNING_SECRET,
        allow_console=PLATFORM_ALLOW_CONSOLE_PROVIDERS,
    )

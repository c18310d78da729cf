"""gunicorn's configuration (read from the working directory): the web process of docker/compose.yml.

Its own error and access logs go out as the platform's JSON lines. One worker process per
container: the Prometheus metrics at /metrics live in that process (scale with replicas, or
raise GUNICORN_THREADS).
"""

from __future__ import annotations

import os

from core.logs import logging_config

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = 1
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_tmp_dir = os.environ.get("TMPDIR", "/tmp")  # noqa: S108 - a tmpfs under the read-only image
# Load Django before serving: a bad setting stops the container at once, the first request is fast.
preload_app = True
# No runtime-management socket (gunicornc): nothing to write, nothing to secure.
control_socket_disable = True
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# With a logging dict, gunicorn logs access lines to `gunicorn.access` (no `accesslog` needed).
logconfig_dict = logging_config(
    level=os.environ.get("LOG_LEVEL", "INFO"), fmt=os.environ.get("LOG_FORMAT", "json")
)
logconfig_dict["loggers"].update(
    {
        name: {"handlers": ["console"], "level": "INFO", "propagate": False}
        for name in ("gunicorn.error", "gunicorn.access")
    }
)

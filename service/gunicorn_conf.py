"""Gunicorn configuration: `gunicorn -c service/gunicorn_conf.py service.app:app` (repo root).

Everything comes from PENGUIN_* variables through service.settings.ServiceSettings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Before anything imports numpy: one BLAS thread per worker. The models are tiny, extra threads
# only cost memory (per-thread buffers) and contend with the other workers for the CPU quota.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# `service` is imported by name: installed into the virtualenv on a host (pip install -e .), on
# PYTHONPATH in the image.
from service.cpu import default_worker_count  # noqa: E402
from service.settings import get_settings  # noqa: E402

_settings = get_settings()

# prometheus_client picks its multiprocess value class at import time, so the directory must be
# in the environment before service.app (and so prometheus_client) is imported.
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_metrics_dir_is_ours = not os.environ.get(_METRICS_ENV)
if _metrics_dir_is_ours:
    os.environ[_METRICS_ENV] = tempfile.mkdtemp(prefix="penguin-metrics-")
_METRICS_DIR = Path(os.environ[_METRICS_ENV])

wsgi_app = "service.app:app"
# Uvicorn's worker (uvloop, httptools), writing each response with one write: see service/worker.py.
worker_class = "service.worker.UvicornWorker"
bind = [_settings.bind]
workers = _settings.workers or default_worker_count()
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
backlog = _settings.backlog
loglevel = _settings.log_level
errorlog = "-"
accesslog = "-" if _settings.access_log else None
logger_class = "service.gunicorn_logging.JsonGunicornLogger"
# Load the app (numpy, pydantic, the models' code) once in the master: workers share those pages
# copy-on-write, which keeps the replica's summed PSS low. Models load per worker (lifespan).
preload_app = True
# Behind Nginx on an overlay network the peer is Nginx; trust its X-Forwarded-* headers.
forwarded_allow_ips = "*"
# Gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which
# several servers on one machine (tests, benchmarks, replicas) would fight over; we never use it.
control_socket_disable = True


def on_starting(server: Any) -> None:
    # Files left by a previous run (same directory given via the environment) would be summed
    # into this run's counters.
    _METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in _METRICS_DIR.glob("*.db"):
        stale.unlink(missing_ok=True)
    server.log.info(
        "starting",
        extra={"workers": workers, "bind": bind, "metrics_dir": str(_METRICS_DIR)},
    )


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges (in-flight requests) must stop counting.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_METRICS_DIR))  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _metrics_dir_is_ours:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)

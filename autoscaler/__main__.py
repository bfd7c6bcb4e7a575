"""python -m autoscaler: the autoscaler process (the stack's `autoscaler` service)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from autoscaler import metrics
from autoscaler.engine import SwarmScaler
from autoscaler.loop import LOG, step
from autoscaler.observe import prometheus_query
from autoscaler.policy import Policy
from autoscaler.settings import AutoscaleSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = AutoscaleSettings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    metrics.serve(settings.metrics_port)
    if not settings.enabled:
        # Idle rather than exit: a replica that exits would be restarted by Swarm for ever.
        LOG.info("disabled (AUTOSCALE_ENABLED is not true): never scaling")
        stop.wait()
        return 0
    LOG.info("starting: %s", settings.model_dump_json())
    policy = Policy(settings, time.monotonic)
    scaler = SwarmScaler.from_env()
    query = prometheus_query(settings)
    while not stop.is_set():
        step(policy, scaler, query, time.time)
        stop.wait(settings.interval_s)
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

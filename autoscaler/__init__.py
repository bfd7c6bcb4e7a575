"""The autoscaler: follows the api's traffic with its replica count, as Kubernetes' HPA would.

Every AUTOSCALE_INTERVAL_S it reads the api's request rate, requests in flight and 503 refusals
from the stack's Prometheus (`observe`), decides a replica count (`policy`, a pure class with an
injected clock) and applies it through the Docker Engine API (`engine`). Every decision goes to
its log and its own /metrics (`metrics`). `from_run` derives the target rate per replica from a
matrix run. Off unless AUTOSCALE_ENABLED=true; see autoscaler/README.md.
"""

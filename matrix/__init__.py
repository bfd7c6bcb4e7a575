"""The capacity matrix: measures replica x CPU x memory cells of the api service under a Locust
load profile and reports the cheapest configuration that meets the latency objective.

Entry point: scripts/run_matrix.sh (python -m matrix). The matrix file format is in README.md.
"""

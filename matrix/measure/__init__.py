"""Measure: drives the load generator, runs trials and steps, samples cgroups, Prometheus and
the cluster target."""

"""A local multi-node Docker Swarm in network namespaces (see cluster/README.md)."""

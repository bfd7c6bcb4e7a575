"""The stack's own tooling: the Docker engine seam, deploy and status, daemon settings,
credentials, admission control and waits; used by scripts/stack_up.sh and by the matrix."""

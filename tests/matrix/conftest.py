"""The matrix tests drive the stack's tooling: they share its fixtures."""

from tests.stack.conftest import ready_server

__all__ = ["ready_server"]

"""Admission control per cell: which Nginx environment variable holds the per-replica in-flight
limit, and what value a cell's `admission` setting means.

The stack file is the one place that names the variable and its default
(`NAME: ${API_MAX_INFLIGHT:-N}` in the nginx service), so both are read from there rather than
repeated here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from matrix.config import PROJECT_ROOT, Admission

STACK_FILE = PROJECT_ROOT / "stack" / "docker-stack.yml"
# The stack setting (environment of scripts/stack_up.sh) for the limit; 0 turns it off.
STACK_KNOB = "API_MAX_INFLIGHT"
_KNOB_LINE = re.compile(r"^\s*([A-Z][A-Z0-9_]*):\s*\"?\$\{" + STACK_KNOB + r":-(\d+)\}\"?\s*$")


class AdmissionError(RuntimeError):
    pass


@dataclass(frozen=True)
class AdmissionKnob:
    env: str  # the nginx service's environment variable
    default: int  # the stack file's default limit per replica


def stack_knob(stack_file: Path = STACK_FILE) -> AdmissionKnob:
    for line in stack_file.read_text(encoding="utf-8").splitlines():
        match = _KNOB_LINE.match(line)
        if match:
            return AdmissionKnob(match.group(1), int(match.group(2)))
    raise AdmissionError(
        f"{stack_file} sets no environment variable from ${{{STACK_KNOB}:-N}}: "
        "this stack has no admission control to switch"
    )


def limit_for(admission: Admission, knob: AdmissionKnob) -> int | None:
    """The in-flight limit a cell asks for (0: off), or None to leave Nginx as deployed."""
    if admission == "stack":
        return None
    if admission == "on":
        return knob.default
    if admission == "off":
        return 0
    return int(admission)

"""Changing a Swarm service's spec without replacing its running tasks by accident.

Why not docker-py's `update_service(..., fetch_current_spec=True)`: it reads the current spec
with the engine's defaults inserted (`insertDefaults`: the container's DNSConfig,
StopGracePeriod, the RestartPolicy, a RollbackConfig) and sends those back. To Swarm that is a
changed task template, so the first update after `docker stack deploy` replaces every running
task, even one that only changes the replica count. Measured on this machine: the autoscaler's
first scale-up during a spike restarted the one serving 0.05-CPU replica, whose replacement took
49 s to start, and Nginx refused every request meanwhile. `docker service scale` sends the spec
as read, changed only where meant, which is what `update` does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any


def update(api: Any, service: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Reads `service`'s spec as stored (no engine defaults inserted), applies `change` to a copy
    and sends that back as the whole new spec, at the version it was read at, so Swarm refuses
    it if someone changed the service in between. `api` is a `docker.APIClient` (typed Any: its
    type stubs leave out the private helpers used here); docker's errors propagate."""
    current = api.inspect_service(service)
    spec = copy.deepcopy(current["Spec"])
    change(spec)
    # docker-py has no public call that sends a spec as given (see the module's docstring).
    url = api._url("/services/{0}/update", current["ID"])
    response = api._post_json(url, data=spec, params={"version": current["Version"]["Index"]})
    api._raise_for_status(response)

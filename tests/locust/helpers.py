"""Imports the locustfile's helper modules by path: locust/ must stay a plain folder (a package
there would shadow the real `locust`)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.support import PROJECT_ROOT

LOCUST_DIR = PROJECT_ROOT / "locust"


def load_helper(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, LOCUST_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

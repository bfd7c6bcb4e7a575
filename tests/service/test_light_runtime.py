"""The API's request path stays numpy-only: the API image ships without scikit-learn or pandas."""

from __future__ import annotations

import subprocess
import sys

from tests.support import PROJECT_ROOT

_PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import ServiceSettings
body = {"island": "Dream", "culmen_length_mm": 46.0, "culmen_depth_mm": 17.0,
        "flipper_length_mm": 190.0, "body_mass_g": 3600.0, "sex": None}
with TestClient(create_app(ServiceSettings())) as client:
    for model in ("lr", "rf", "svm"):
        assert client.post(f"/predict?model={model}", json=body).status_code == 200
    assert client.post("/predict/batch", json={"instances": [body] * 5}).status_code == 200
heavy = sorted(m for m in ("sklearn", "pandas", "scipy", "joblib") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_serving_never_imports_sklearn_pandas_or_scipy(models_dir) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PENGUIN_MODELS_DIR": str(models_dir), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "none"

"""The HTTP layer over fake models: status codes, error shape, limits, metrics, OpenAPI."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.conftest import FakeModel
from tests.support import SEED_BODY

with warnings.catch_warnings():
    # Starlette nags about httpx here; the TestClient still works and httpx is what we pin.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

MAX_BODY = 4096
MAX_BATCH = 3


@pytest.fixture
def client(fake_models: dict[str, FakeModel]) -> TestClient:
    settings = ServiceSettings(max_body_bytes=MAX_BODY, max_batch_size=MAX_BATCH)
    app = create_app(settings, models=fake_models, manifest={})
    return TestClient(app, raise_server_exceptions=False)


def _assert_error(response, status: int, error: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message", "detail"}
    assert body["error"] == error
    if field is not None:
        assert field in {item["field"] for item in body["detail"]}
    return body


def test_predict_uses_the_default_model(client: TestClient, fake_models) -> None:
    response = client.post("/predict", json=SEED_BODY)
    assert response.status_code == 200
    assert response.json() == {
        "species": "Gentoo",
        "probabilities": {"Adelie": 0.2, "Chinstrap": 0.3, "Gentoo": 0.5},
        "model": "lr",
        "model_version": "lr-test-1",
    }
    assert fake_models["lr"].calls == [[SEED_BODY]]


def test_predict_passes_canonical_values_to_the_model(client: TestClient, fake_models) -> None:
    client.post("/predict?model=rf", json={**SEED_BODY, "island": "biscoe", "sex": "male"})
    assert fake_models["rf"].calls == [[SEED_BODY]]
    assert fake_models["lr"].calls == []


def test_default_model_comes_from_settings(fake_models) -> None:
    app = create_app(ServiceSettings(default_model="svm"), models=fake_models)
    assert TestClient(app).post("/predict", json=SEED_BODY).json()["model"] == "svm"


def test_unknown_model_lists_the_valid_ones(client: TestClient) -> None:
    body = _assert_error(client.post("/predict?model=xgb", json=SEED_BODY), 422, "unknown_model")
    assert "lr, rf, svm" in body["message"]
    assert body["detail"][0]["field"] == "model"


def test_batch_keeps_order_and_size(client: TestClient, fake_models) -> None:
    rows = [SEED_BODY, {**SEED_BODY, "island": "Dream"}, {**SEED_BODY, "sex": None}]
    response = client.post("/predict/batch?model=svm", json={"instances": rows})
    assert response.status_code == 200
    body = response.json()
    assert (body["model"], body["model_version"]) == ("svm", "svm-test-1")
    assert len(body["predictions"]) == 3
    assert [call["island"] for call in fake_models["svm"].calls[0]] == ["Biscoe", "Dream", "Biscoe"]


def test_batch_limits(client: TestClient) -> None:
    _assert_error(
        client.post("/predict/batch", json={"instances": [SEED_BODY] * (MAX_BATCH + 1)}),
        422,
        "batch_too_large",
        "instances",
    )
    _assert_error(client.post("/predict/batch", json={"instances": []}), 422, "validation_error")
    _assert_error(
        client.post("/predict/batch", json={"instances": [SEED_BODY, {**SEED_BODY, "sex": 1}]}),
        422,
        "validation_error",
        "instances[1].sex",
    )


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        (b"", {}, 400, "empty_body"),
        (b"{not json", {}, 400, "invalid_json"),
        (b"\xff\xfe\x00{", {}, 400, "invalid_json"),
        (b"[" * 2000, {}, 400, "invalid_json"),
        (b"[]", {}, 422, "validation_error"),
        (b'"Biscoe"', {}, 422, "validation_error"),
        (
            b"island=Biscoe",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (b"{}", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (b"x" * (MAX_BODY + 1), {}, 413, "body_too_large"),
        (b"{}", {"content-length": "abc"}, 400, "invalid_header"),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(
    client: TestClient, content: bytes, headers: dict, status: int, error: str
) -> None:
    _assert_error(client.post("/predict", content=content, headers=headers), status, error)


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1024

    # A generator is sent chunked, without Content-Length: the limit must hold on the stream.
    _assert_error(client.post("/predict", content=chunks()), 413, "body_too_large", "body")


def test_json_media_type_with_charset_is_accepted(client: TestClient) -> None:
    import json

    response = client.post(
        "/predict",
        content=json.dumps(SEED_BODY).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    _assert_error(client.get("/nowhere"), 404, "not_found")
    _assert_error(client.get("/predict"), 405, "method_not_allowed")


def test_not_ready_without_models() -> None:
    # Without entering the client's context the lifespan (model loading) never runs.
    client = TestClient(create_app(ServiceSettings()), raise_server_exceptions=False)
    assert client.get("/health").status_code == 200
    _assert_error(client.get("/ready"), 503, "not_ready")
    _assert_error(client.post("/predict", json=SEED_BODY), 503, "not_ready")
    _assert_error(client.get("/models"), 503, "not_ready")


def test_missing_models_fail_start_up_naming_the_file(tmp_path) -> None:
    app = create_app(ServiceSettings(models_dir=tmp_path))
    with pytest.raises(Exception, match="manifest.json"), TestClient(app):
        pass


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    from prometheus_client import REGISTRY

    def count(route: str, status: str) -> float:
        labels = {"method": "POST", "route": route, "status": status}
        return REGISTRY.get_sample_value("penguin_http_requests_total", labels) or 0.0

    before_ok, before_bad = count("/predict", "200"), count("/predict", "422")
    client.post("/predict", json=SEED_BODY)
    client.post("/predict", json={**SEED_BODY, "sex": "?"})
    assert count("/predict", "200") == before_ok + 1
    assert count("/predict", "422") == before_bad + 1
    text = client.get("/metrics").text
    for name in (
        "penguin_http_requests_total",
        "penguin_http_request_duration_seconds_bucket",
        "penguin_http_requests_in_flight",
        "penguin_inference_duration_seconds_bucket",
    ):
        assert name in text
    # Unknown paths share one label instead of one series per URL.
    client.get("/random-path-123")
    assert "random-path-123" not in client.get("/metrics").text


def test_probes_are_counted_but_not_timed_and_scrapes_not_metered(client: TestClient) -> None:
    client.post("/predict", json=SEED_BODY)
    for path in ("/health", "/ready", "/metrics"):
        client.get(path)
    text = client.get("/metrics").text
    for route in ("/health", "/ready"):
        labels = f'{{method="GET",route="{route}",status="200"}}'
        assert f"penguin_http_requests_total{labels}" in text
        assert f"penguin_http_request_duration_seconds_count{labels}" not in text
    timed = '{method="POST",route="/predict",status="200"}'
    assert f"penguin_http_request_duration_seconds_count{timed}" in text
    assert 'route="/metrics"' not in text

    # A scrape leaves the request series as they were: the next one reports the same.
    def requests_lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("penguin_http")]

    assert requests_lines(client.get("/metrics").text) == requests_lines(text)


def test_openapi_documents_the_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/PenguinFeatures"
    components = schema["components"]["schemas"]
    features = components["PenguinFeatures"]
    assert set(features["properties"]) == set(SEED_BODY)
    assert features["additionalProperties"] is False
    assert features["properties"]["island"]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert features["properties"]["sex"]["enum"] == ["MALE", "FEMALE", None]
    assert features["properties"]["culmen_length_mm"]["minimum"] == 10
    instances = components["BatchRequest"]["properties"]["instances"]
    assert instances["items"]["$ref"] == "#/components/schemas/PenguinFeatures"
    assert (instances["minItems"], instances["maxItems"]) == (1, MAX_BATCH)
    model = schema["paths"]["/predict"]["post"]["parameters"][0]
    assert (model["name"], model["schema"]["enum"]) == ("model", ["lr", "rf", "svm"])
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}
    assert client.get("/docs").status_code == 200


def test_every_served_route_is_documented_by_its_own_handler(client: TestClient) -> None:
    """One declaration per endpoint: the document lists exactly what the app serves."""
    app = client.app
    documented = {
        (path, method.upper(), operation["operationId"])
        for path, operations in client.get("/openapi.json").json()["paths"].items()
        for method, operation in operations.items()
    }
    served = {
        (endpoint.path, endpoint.method, endpoint.handler.__name__)
        for endpoint in app.endpoints  # type: ignore[attr-defined]
        if endpoint.in_schema
    }
    assert documented == served
    assert {path for path, _, _ in served} == {
        "/predict",
        "/predict/batch",
        "/models",
        "/health",
        "/ready",
        "/metrics",
    }


def test_wrong_method_names_the_allowed_one(client: TestClient) -> None:
    response = client.put("/predict", json=SEED_BODY)
    _assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"

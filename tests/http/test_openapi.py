"""The OpenAPI document: valid OpenAPI 3.1, one operation per route and a route per operation,
made from the classes the handlers use; the HTML page that lists it."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from openapi_spec_validator import validate
from quart import Response

from saga_orchestrator.config import Settings
from saga_orchestrator.errors import ValidationError
from saga_orchestrator.http.app import create_app
from saga_orchestrator.http.openapi import (
    build_document,
    check_documented,
    documented_routes,
    is_ui_path,
    openapi_path,
    operation,
    render_html,
)
from saga_orchestrator.http.schema import SchemaBuilder, api_field
from saga_orchestrator.http.validate import check_body
from saga_orchestrator.http.views.events import PublishRequest
from saga_orchestrator.http.views.sagas import StartSagaRequest
from tests.support import open_api

PUBLIC = {
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
}


async def served_document(api_key: str | None) -> tuple[Any, dict[str, Any]]:
    async with open_api(settings=Settings(environment="test", api_key=api_key)) as api:
        response = await api.client.get("/openapi.json")
        assert 200 == response.status_code
        return api.app, await response.get_json()


@pytest.mark.parametrize("api_key", ["k", None])
async def test_the_document_is_valid_openapi_3_1(api_key: str | None) -> None:
    _, document = await served_document(api_key)
    validate(document)
    assert "3.1.0" == document["openapi"]


async def test_every_route_is_in_the_document_and_every_operation_is_a_route() -> None:
    app, document = await served_document("k")
    routes = {(method.lower(), openapi_path(rule)) for rule, method, _ in documented_routes(app)}
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == operations
    # What Quart routes, less its automatic HEAD and OPTIONS and the dashboard's pages (not the
    # API: see saga_orchestrator.ui), is what was compared.
    served = {
        (method.lower(), openapi_path(rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    pages = {(method, path) for method, path in served if is_ui_path(path)}
    assert ("get", "/ui/") in pages
    assert served - pages == routes
    assert 20 <= len(routes)


async def test_each_operation_documents_its_errors_in_the_error_shape() -> None:
    _, document = await served_document("k")
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in document["paths"].items():
        for method, spec in item.items():
            responses = spec["responses"]
            assert "500" in responses, (method, path)
            public = (method, path) in PUBLIC
            assert ("401" not in responses) == public, (method, path)
            assert ([] if public else [{"ApiKey": []}, {"Bearer": []}]) == spec["security"]
            if "requestBody" in spec:
                assert {"400", "413", "415", "422"} <= set(responses), (method, path)
            if "{saga_id}" in path:
                assert "404" in responses
            for status, answer in responses.items():
                assert {"$ref": "#/components/headers/X-Correlation-ID"} == (
                    answer["headers"]["X-Correlation-ID"]
                )
                if int(status) >= 400 and not path.startswith("/health"):
                    assert error_ref == answer["content"]["application/json"]["schema"]
                if status == "503" and not path.startswith("/health"):
                    assert "Retry-After" in answer["headers"]
    start = document["paths"]["/sagas/start"]["post"]
    assert "Location" in start["responses"]["202"]["headers"]
    assert "`unknown_saga_type`" in start["responses"]["422"]["description"]


async def test_without_an_api_key_the_document_declares_no_security() -> None:
    _, document = await served_document(None)
    assert "securitySchemes" not in document["components"]
    for item in document["paths"].values():
        for spec in item.values():
            assert "security" not in spec
            assert "401" not in spec["responses"]


async def test_request_and_response_schemas_come_from_the_view_classes() -> None:
    _, document = await served_document("k")
    schemas = document["components"]["schemas"]
    start = schemas["StartSagaRequest"]
    assert ["saga_type", "data"] == start["required"]
    assert start["additionalProperties"] is False
    assert {("minLength", 1), ("maxLength", 255)} <= start["properties"]["saga_type"].items()
    publish = schemas["PublishRequest"]["properties"]
    assert "^[^\\s\\x00-\\x1f\\x7f-\\x9f]+$" == publish["stream_id"]["pattern"]
    assert 0 == publish["expected_version"]["minimum"]
    # Fields left out when unset are not required, and never null.
    detail = schemas["ErrorDetail"]
    assert ["code", "message", "details"] == detail["required"]
    assert {"type": "array", "items": {"type": "string"}} == {
        k: v for k, v in detail["properties"]["available_types"].items() if k != "description"
    }
    saga = schemas["SagaView"]
    assert "steps" in saga["required"]
    assert {"$ref": "#/components/schemas/StepView"} == saga["properties"]["steps"]["items"]
    parameters = {
        p["name"]: p
        for p in document["paths"]["/sagas/"]["get"]["parameters"]
        if p["in"] == "query"
    }
    assert {
        "status",
        "saga_type",
        "saga_version",
        "active",
        "correlation_id",
        "idempotency_key",
        "trigger_event_id",
        "created_after",
        "created_before",
        "updated_after",
        "updated_before",
        "limit",
        "cursor",
    } == set(parameters)
    assert {"type": "integer", "minimum": 1, "maximum": 500, "default": 50} == parameters["limit"][
        "schema"
    ]
    assert "boolean" == parameters["active"]["schema"]["type"]
    assert "integer" == parameters["saga_version"]["schema"]["type"]


def test_the_checks_and_the_schema_read_the_same_constraints() -> None:
    schema = SchemaBuilder(refs=True)
    schema.schema(StartSagaRequest)
    key = schema.components["StartSagaRequest"]["properties"]["idempotency_key"]
    assert 255 == key["maxLength"]
    check_body(StartSagaRequest, {"saga_type": "t", "data": {}, "idempotency_key": "k" * 255})
    with pytest.raises(ValidationError) as caught:
        check_body(StartSagaRequest, {"saga_type": "t", "data": {}, "idempotency_key": "k" * 256})
    assert [{"field": "idempotency_key", "message": "expected 1 to 255 characters"}] == (
        caught.value.errors
    )
    with pytest.raises(ValidationError) as caught:
        check_body(PublishRequest, {"event_type": "a b", "stream_id": "s", "data": {}, "x": 1})
    assert ["x", "event_type"] == [error["field"] for error in caught.value.errors]


async def test_a_route_without_an_operation_is_refused() -> None:
    async with open_api() as api:
        app = create_app(api.deps)

        @app.get("/undocumented")
        async def undocumented() -> Response:
            return Response("")

        with pytest.raises(LookupError, match="GET /undocumented"):
            check_documented(app)
        with pytest.raises(LookupError, match="GET /undocumented"):
            build_document(app, auth=False)

        @app.get("/documented")
        @operation(summary="Documented", tag="Health", public=True, replies=[])
        async def documented() -> Response:
            return Response("")

        with pytest.raises(LookupError, match="GET /undocumented") as caught:
            check_documented(app)
        assert "documented," not in str(caught.value)


async def test_the_docs_page_lists_every_operation_escaped() -> None:
    async with open_api(settings=Settings(environment="test", api_key="k")) as api:
        response = await api.client.get("/docs")
        assert 200 == response.status_code
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        page = (await response.get_data()).decode()
        document = await (await api.client.get("/openapi.json")).get_json()
    for path in document["paths"]:
        assert f"<code>{path}</code>" in page
    assert "<script" not in page
    hostile = {
        "info": {"title": "<script>x</script>", "version": "1", "description": "&"},
        "tags": [{"name": "T"}],
        "paths": {"/<b>": {"get": {"tags": ["T"], "summary": "<i>", "responses": {"200": {}}}}},
    }
    html = render_html(hostile)
    assert "<script>x" not in html and "&lt;script&gt;" in html
    assert "<code>/&lt;b&gt;</code>" in html


@attrs.frozen(kw_only=True)
class Inner:
    name: str = api_field(doc="A name.", max_length=3)


@attrs.frozen(kw_only=True)
class Outer:
    first: Inner
    rest: list[Inner]
    maybe: Inner | None = None


def test_a_class_used_twice_is_described_once() -> None:
    builder = SchemaBuilder(refs=True)
    assert {"$ref": "#/components/schemas/Outer"} == builder.schema(Outer)
    assert {"Inner", "Outer"} == set(builder.components)
    outer = builder.components["Outer"]["properties"]
    ref = {"$ref": "#/components/schemas/Inner"}
    assert ref == outer["first"]
    assert {"type": "array", "items": ref} == outer["rest"]
    assert {"anyOf": [ref, {"type": "null"}], "default": None} == outer["maybe"]
    assert {"type": "string", "maxLength": 3, "description": "A name."} == builder.components[
        "Inner"
    ]["properties"]["name"]


async def test_the_docs_page_renders_schemas_examples_statuses_and_authentication() -> None:
    async with open_api(settings=Settings(environment="test", api_key="k")) as api:
        page = (await (await api.client.get("/docs")).get_data()).decode()
    start = page[page.index('id="op-start_saga"') :]
    start = start[: start.index("</section>")]
    assert "<code>X-API-Key</code>" in start  # how it is authenticated
    assert '<a href="#schema-StartSagaRequest">StartSagaRequest</a>' in start
    assert '"saga_type": "string"' in start.replace("&quot;", '"')  # an example body
    for status in ("202", "200", "401", "409", "422", "503"):
        assert f"<td>{status}</td>" in start
    assert "<code>Idempotency-Key</code>" in start
    assert "`" not in page  # backticks are rendered as code
    assert 'id="schema-SagaView"' in page
    assert "Authentication: none (public)." in page  # the health probes

"""The OpenAPI 3.1 document of the API, built from the application itself and served, without a
token, at ``GET /api/v1/openapi.json``.

- paths and methods: ``app.router`` (the HEAD route aiohttp adds beside each GET is left out:
  same handler, no body);
- path parameters: ``api.params.PATH_PARAMS``; query parameters, bodies and ``data``: the
  pydantic models each route declares with ``api.endpoint`` (the same models parse the request);
- responses: HTTP 200 is the envelope, either success (``errno`` 0, the declared ``data``) or a
  domain error (``errno`` ≠ 0, ``data`` null: not found, conflict, timeout…); 401, 413, 422 and
  503 are the error envelope;
- security: bearer, except on ``api.auth.OPEN_PATHS``;
- MemOS's routes (``memos=True``, under ``/api/openmem/v1``) answer MemOS's envelope
  ``{code, data, message}`` instead, errors included, and take ``Token <key>`` as well as bearer.

Building fails when a route has no declaration or a path parameter ``PATH_PARAMS`` does not
know, so a new route cannot go undocumented.
"""

from importlib.metadata import version
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from api.auth import OPEN_PATHS
from api.endpoint import Endpoint, endpoint, spec_of
from api.params import PATH_PARAMS

DOCUMENT = web.AppKey("openapi", dict)
REF = "#/components/schemas/{model}"


def _error(code: str, message: str, domain: bool = False) -> dict[str, Any]:
    """An error envelope whose number is ``code`` and text ``message``; ``domain``: the number is never 0."""
    return {
        "type": "object",
        "required": ["data", code, message],
        "properties": {
            "data": {"type": "null"},
            code: {"type": "integer", **({"not": {"const": 0}} if domain else {})},
            message: {"type": "string"},
            "task_id": {"type": "string", "description": "the task concerned (wait timed out, task failed)"},
        },
    }


# The component name prefix and the (number, text) fields of each envelope.
_ENVELOPES = {"": ("errno", "errmsg"), "Memos": ("code", "message")}
_ERRORS = {
    "401": "Missing or wrong bearer token",
    "403": "The call needs the root token",
    "413": "Body larger than MEMSTREAM_MAX_BODY_BYTES",
    "422": "A path parameter, query parameter, query string or body that does not parse; errmsg names the field",
    "503": "Broker or ClickHouse unreachable (retry), or for the healthcheck: a part of the service is down",
}

routes = web.RouteTableDef()


@routes.get("/api/v1/openapi.json")
@endpoint("This document", envelope=False)
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])


def _strip(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without pydantic's title and its ``null`` branch (absent means None)."""
    schema = {k: v for k, v in schema.items() if k != "title"}
    branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        schema = {**branches[0], **schema}
    elif branches:
        schema["anyOf"] = branches
    if schema.get("default", ...) is None:
        del schema["default"]
    return schema


class _Builder:
    """Collects every declared type, then renders them with one shared ``components.schemas``."""

    def __init__(self) -> None:
        self.inputs: list[tuple[tuple[str, str, str], JsonSchemaMode, TypeAdapter[Any]]] = []

    def add(self, key: tuple[str, str, str], annotation: Any, mode: JsonSchemaMode) -> None:
        if annotation is not None:
            self.inputs.append((key, mode, TypeAdapter(annotation)))

    def render(self) -> tuple[dict[tuple[str, str, str], dict[str, Any]], dict[str, Any]]:
        """The schema of each key (mode dropped), and the shared definitions."""
        schemas, definitions = TypeAdapter.json_schemas(self.inputs, ref_template=REF)
        return {key: schema for (key, _), schema in schemas.items()}, definitions.get("$defs", {})


def _parameters(path: str, query: dict[str, Any] | None, components: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for name in (part[1:-1] for part in path.split("/") if part.startswith("{")):
        if name not in PATH_PARAMS:
            raise ValueError(f"{path}: path parameter {{{name}}} is not declared in api.params.PATH_PARAMS")
        found.append({"name": name, "in": "path", "required": True, "schema": PATH_PARAMS[name].schema})
    if query is not None:
        if "$ref" in query:
            query = components[query["$ref"].rsplit("/", 1)[1]]
        required = set(query.get("required", []))
        for name, schema in query["properties"].items():
            parameter = {"name": name, "in": "query", "required": name in required, "schema": _strip(schema)}
            if "description" in parameter["schema"]:
                parameter["description"] = parameter["schema"].pop("description")
            found.append(parameter)
    return found


def _responses(spec: Endpoint, data: dict[str, Any] | None, is_open: bool) -> dict[str, Any]:
    if not spec.envelope:
        return {"200": {"description": spec.summary, "content": {"application/json": {"schema": {"type": "object"}}}}}
    prefix = "Memos" if spec.memos else ""
    code, message = _ENVELOPES[prefix]
    success = {
        "type": "object",
        "required": ["data", code, message],
        "properties": {"data": data or {"type": "null"}, code: {"const": 0}, message: {"type": "string"}},
    }
    domain_error = {"$ref": REF.format(model=f"{prefix}DomainError")}
    answers = {
        "200": {
            "description": f"Success, or a domain error ({code} ≠ 0, data null)",
            "content": {"application/json": {"schema": {"anyOf": [success, domain_error]}}},
        }
    }
    wanted = {
        "401": not is_open,
        "403": spec.root_only,
        "413": spec.body is not None,
        "422": True,
        "503": True,
    }  # 422: any query string
    answers.update(
        {status: {"$ref": f"#/components/responses/{prefix}E{status}"} for status, needed in wanted.items() if needed}
    )
    return answers


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of every route of ``app``; raises ValueError on an undeclared route."""
    builder = _Builder()
    operations = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource else ""
        spec = spec_of(route.handler)
        if spec is None:
            raise ValueError(f"{route.method} {path} has no @endpoint declaration")
        builder.add((path, route.method, "query"), spec.query, "validation")
        builder.add((path, route.method, "body"), spec.body, "validation")
        builder.add((path, route.method, "data"), spec.data, "serialization")
        operations.append((path, route, spec))
    schemas, components = builder.render()
    for prefix, (code, message) in _ENVELOPES.items():
        components[f"{prefix}Error"] = _error(code, message)
        components[f"{prefix}DomainError"] = _error(code, message, domain=True)

    paths: dict[str, dict[str, Any]] = {}
    for path, route, spec in operations:
        handler, method = route.handler, route.method
        operation: dict[str, Any] = {
            "operationId": handler.__name__,
            "summary": spec.summary,
            "tags": [handler.__module__.rsplit(".", 1)[-1]],
            "parameters": _parameters(path, schemas.get((path, method, "query")), components),
        }
        if (body := schemas.get((path, method, "body"))) is not None:
            operation["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": body}},
            }
        is_open = path in OPEN_PATHS
        if is_open:
            operation["security"] = []
        elif spec.memos:
            operation["security"] = [{"token": []}, {"bearer": []}]
        operation["responses"] = _responses(spec, schemas.get((path, method, "data")), is_open)
        paths.setdefault(path, {})[method.lower()] = operation
    for _, _, spec in operations:  # query models live on as parameters, not as schemas
        if spec.query is not None:
            components.pop(spec.query.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Memstream",
            "version": version("memstream"),
            "description": "Long-term user memory for LLM apps, speaking the Memobase v1 HTTP API. "
            "Every answer except this document is the envelope {data, errno, errmsg}, but under "
            "/api/openmem/v1 (MemOS's product API) it is MemOS's {code, data, message}; "
            "unknown query parameters are ignored.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                f"{prefix}E{status}": {
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": REF.format(model=f"{prefix}Error")}}},
                }
                for prefix in _ENVELOPES
                for status, text in _ERRORS.items()
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'Token <key>', as MemOS clients send it (the same tokens as bearer)",
                },
            },
        },
        "security": [{"bearer": []}],
    }

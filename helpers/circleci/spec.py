"""CircleCI's OpenAPI spec as a test oracle: find an operation's inline schema and validate a body.

The spec lives outside the repository (``<repo>/../shared/reference/circleci-openapi-v2.json``);
callers skip their checks when :func:`find_spec` returns ``None``. Used by this package's tests
and by the local CircleCI's contract test, so both are checked by the same rules.

Two allowances, both written down here and nowhere else:
- the spec was converted from Swagger 2 and marks nullable fields ``x-nullable``, which OpenAPI 3.0
  validators ignore; they are read as ``nullable: true`` (what CircleCI means by them);
- ``started_at`` of a workflow job and of job details is ``null`` until the job starts, though
  the spec lists it as a required string.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_NAME = "circleci-openapi-v2.json"

# (operationId, JSON pointer inside the response schema) -> made nullable
_NULL_UNTIL_STARTED = {
    ("listWorkflowJobs", ("properties", "items", "items", "properties", "started_at")),
    ("getJobDetails", ("properties", "started_at")),
}


def find_spec() -> Path | None:
    """The spec next to the repository, or ``None`` when this checkout has no reference folder."""
    repo = Path(__file__).resolve().parents[2]
    path = repo.parent / "shared" / "reference" / SPEC_NAME
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _load(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _spec(path: Path | None) -> dict[str, Any]:
    path = path or find_spec()
    if path is None:
        raise FileNotFoundError(f"{SPEC_NAME} not found in <repo>/../shared/reference/")
    return _load(str(path))


def _operation(spec: dict[str, Any], operation_id: str) -> dict[str, Any]:
    for item in spec["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return op
    raise KeyError(f"operationId {operation_id!r} is not in the spec")


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    """Inline every ``$ref`` (the spec has no recursive schemas) and read ``x-nullable``."""
    if isinstance(node, list):
        return [_resolve(spec, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _resolve(spec, target)
    out = {key: _resolve(spec, value) for key, value in node.items()}
    if out.get("x-nullable"):
        out["nullable"] = True
    return out


def response_schema(
    operation_id: str, status: int | str = 200, *, path: Path | None = None
) -> dict[str, Any]:
    """The JSON schema of an operation's response, with the allowances above applied."""
    spec = _spec(path)
    response = _resolve(spec, _operation(spec, operation_id)["responses"][str(status)])
    schema = copy.deepcopy(response["content"]["application/json"]["schema"])
    for op_id, pointer in _NULL_UNTIL_STARTED:
        if op_id == operation_id and str(status).startswith("2"):  # not the error schemas
            node = schema
            for part in pointer:
                node = node[part]
            node["nullable"] = True
    return schema


def request_schema(operation_id: str, *, path: Path | None = None) -> dict[str, Any]:
    """The JSON schema of an operation's request body."""
    spec = _spec(path)
    body = _resolve(spec, _operation(spec, operation_id)["requestBody"])
    return body["content"]["application/json"]["schema"]


def validate(body: Any, schema: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``body`` does not match (formats checked)."""
    from openapi_schema_validator import OAS30Validator, oas30_format_checker

    OAS30Validator(schema, format_checker=oas30_format_checker).validate(body)


def validate_response(
    operation_id: str, body: Any, status: int | str = 200, *, path: Path | None = None
) -> None:
    """Check a response body against the spec (the contract tests' one call)."""
    validate(body, response_schema(operation_id, status, path=path))


def validate_request(operation_id: str, body: Any, *, path: Path | None = None) -> None:
    validate(body, request_schema(operation_id, path=path))

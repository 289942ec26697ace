"""``GET /docs``: the OpenAPI document rendered as one self-contained HTML page.

For each operation (grouped by tag): its method and path, summary and description, how it is
authenticated, its parameters, its request body (with an example made from the schema), and
every status it answers with its description, headers and body schema. Then every schema of
``components/schemas`` with its fields and an example. Text in backticks is shown as code;
everything else is escaped. No script, nothing fetched from elsewhere.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

__all__ = ["example_of", "render_html"]

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#1a1a1a}
a{color:#0b57d0}:focus-visible{outline:3px solid #ff9800;outline-offset:2px}
table{border-collapse:collapse;width:100%;margin:.25rem 0 1rem}
td,th{border-bottom:1px solid #c9ced6;padding:.3rem .5rem;text-align:left;vertical-align:top}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:90%}
pre{background:#f6f7f9;border:1px solid #c9ced6;padding:.5rem;overflow-x:auto}
.op{border:1px solid #c9ced6;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.m{font-weight:700;font-family:monospace;padding:0 .35rem;border:1px solid currentColor;
border-radius:3px}
.get{color:#146c2e}.post{color:#0b57d0}.delete{color:#a4161a}
nav ul{columns:2 18rem}
@media (max-width:480px){body{margin:1rem auto}nav ul{columns:1}}
"""
_KEY = "the API key (<code>X-API-Key</code> or <code>Authorization: Bearer</code>)."
_CODE = re.compile(r"`([^`]+)`")


def _text(value: Any) -> str:
    """Escaped text with its backticks as ``<code>``."""
    return _CODE.sub(r"<code>\1</code>", html.escape(str(value).replace("``", "`")))


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in a few escaped words, schemas by reference linked."""
    name = _ref_name(schema)
    if name is not None:
        return f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a>'
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return "one of " + ", ".join(
            f"<code>{html.escape(json.dumps(v))}</code>" for v in schema["enum"]
        )
    extra = [f"{key} {schema[key]}" for key in ("format", "minimum", "maximum", "minLength",
                                                  "maxLength") if key in schema]  # fmt: skip
    return html.escape(" ".join([str(kind), *(f"({e})" for e in extra)]))


def example_of(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> Any:
    """A value that fits ``schema`` (its example or default when it has one)."""
    if depth > 6:
        return None
    name = _ref_name(schema)
    if name is not None:
        return example_of(schemas.get(name, {}), schemas, depth + 1)
    for key in ("example", "default", "const"):
        if key in schema and schema[key] is not None:
            return schema[key]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return example_of(options[0], schemas, depth + 1) if options else None
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", properties))
        return {
            key: example_of(value, schemas, depth + 1)
            for key, value in properties.items()
            if key in required
        }
    if kind == "array":
        return [example_of(schema.get("items", {}), schemas, depth + 1)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "string":
        return {
            "uuid": "6f1c2d3e-0000-4000-8000-000000000000",
            "date-time": "2026-01-01T00:00:00Z",
        }.get(schema.get("format", ""), "string")
    return None


def _example(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    value = json.dumps(example_of(schema, schemas), indent=2)
    return f"<pre>{html.escape(value)}</pre>"


def _fields(schema: dict[str, Any]) -> str:
    properties = schema.get("properties", {})
    if not properties:
        return f"<p>{_type(schema)}</p>"
    required = set(schema.get("required", ()))
    rows = [
        f"<tr><td><code>{html.escape(name)}</code>{' (required)' if name in required else ''}"
        f"</td><td>{_type(field)}</td><td>{_text(field.get('description', ''))}</td></tr>"
        for name, field in properties.items()
    ]
    return (
        '<table><tr><th scope="col">Field</th><th scope="col">Type</th>'
        f'<th scope="col">Meaning</th></tr>{"".join(rows)}</table>'
    )


def _operation(method: str, path: str, op: dict[str, Any], document: dict[str, Any]) -> str:
    schemas = document.get("components", {}).get("schemas", {})
    op_id = html.escape(op.get("operationId", f"{method}-{path}"))
    parts = [
        f'<section class="op" id="op-{op_id}" aria-labelledby="h-{op_id}">',
        f'<h3 id="h-{op_id}"><span class="m {html.escape(method)}">{html.escape(method.upper())}'
        f"</span> <code>{html.escape(path)}</code></h3>",
        f"<p><strong>{_text(op.get('summary', ''))}</strong></p>",
    ]
    if op.get("description"):
        parts.append(f"<p>{_text(op['description'])}</p>")
    security = op.get("security")
    if security is not None:
        how = _KEY if security else "none (public)."
        parts.append(f"<p>Authentication: {how}</p>")
    parameters = op.get("parameters", [])
    if parameters:
        rows = [
            f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{html.escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td><td>{_type(p.get('schema', {}))}"
            f"</td><td>{_text(p.get('description', ''))}</td></tr>"
            for p in parameters
        ]
        parts.append(
            '<h4>Parameters</h4><table><tr><th scope="col">Name</th><th scope="col">In</th>'
            '<th scope="col">Required</th><th scope="col">Type</th><th scope="col">Meaning</th>'
            f"</tr>{''.join(rows)}</table>"
        )
    body = op.get("requestBody")
    if body:
        schema = body.get("content", {}).get("application/json", {}).get("schema", {})
        required = "required" if body.get("required") else "optional"
        parts.append(f"<h4>Request body ({required}, JSON): {_type(schema)}</h4>")
        parts.append(_example(schema, schemas))
    rows = []
    for status, reply in op.get("responses", {}).items():
        content = reply.get("content", {})
        kinds = ", ".join(
            f"{html.escape(media)}: {_type(spec.get('schema', {}))}"
            for media, spec in content.items()
        )
        headers = ", ".join(f"<code>{html.escape(h)}</code>" for h in reply.get("headers", {}))
        rows.append(
            f"<tr><td>{html.escape(str(status))}</td><td>{_text(reply.get('description', ''))}"
            f"</td><td>{kinds}</td><td>{headers}</td></tr>"
        )
    parts.append(
        '<h4>Answers</h4><table><tr><th scope="col">Status</th><th scope="col">When</th>'
        f'<th scope="col">Body</th><th scope="col">Headers</th></tr>{"".join(rows)}</table>'
    )
    parts.append("</section>")
    return "\n".join(parts)


def render_html(document: dict[str, Any]) -> str:
    """The page of ``document``; everything in it is escaped."""
    esc = html.escape
    info = document["info"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(info['title'])} <small>{esc(info['version'])}</small></h1>",
        f"<p>{_text(info.get('description', ''))}</p>",
        '<p>The full document: <a href="/openapi.json">/openapi.json</a> '
        "(load it into any OpenAPI viewer or client generator). The web dashboard: "
        '<a href="/ui/">/ui/</a>.</p>',
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    contents = ['<nav aria-label="Operations"><h2>Operations</h2><ul>']
    for tag in document.get("tags", []):
        for method, path, op in by_tag.get(tag["name"], []):
            op_id = esc(op.get("operationId", f"{method}-{path}"))
            contents.append(
                f'<li><a href="#op-{op_id}">{esc(method.upper())} <code>{esc(path)}</code></a>'
                f" {_text(op.get('summary', ''))}</li>"
            )
    contents.append("</ul></nav>")
    parts.extend(contents)
    for tag in document.get("tags", []):
        operations = by_tag.get(tag["name"], [])
        if not operations:
            continue
        parts.append(f"<h2>{esc(tag['name'])}</h2><p>{_text(tag.get('description', ''))}</p>")
        parts.extend(_operation(method, path, op, document) for method, path, op in operations)
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        parts.append("<h2>Schemas</h2>")
        for name, schema in schemas.items():
            parts.append(
                f'<section id="schema-{esc(name)}"><h3>{esc(name)}</h3>'
                f"<p>{_text(schema.get('description', ''))}</p>{_fields(schema)}"
                f"<details><summary>Example</summary>{_example(schema, schemas)}</details>"
                "</section>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)

"""Tools described by a JSON schema: checked with `jsonschema`, shown as a signature.

A schema tool is the same `Tool` as a Python one; only how it checks arguments
(its `_validate`: the JSON schema, through jsonschema's validator, not pydantic)
and its callable differ, so the engine, the planner prompt and the plan grammar
serve both through one path.

Every construct a schema may use is either supported (checked by jsonschema,
shown to a planner, expressible in a plan) or refused when the tool is built,
naming the construct and the tool: a tool a planner cannot use correctly is a
bug better found at registration than mid-run.
"""

from __future__ import annotations

import copy
import inspect
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from plait._errors import ToolArgumentError
from plait.runtime._tools import Tool, ToolPolicy

# Keywords that are checked by jsonschema and that the prompt and the plan
# grammar understand (or that only constrain values, which jsonschema checks).
SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "default", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems",
})
# Keywords that say something to people and nothing to a validator.
ANNOTATIONS = frozenset({
    "title", "description", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
    "$schema", "$id", "contentMediaType",
})
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
MAX_SHOWN_DEPTH = 3  # nested objects shown to a planner (a recursive $ref stops here)


class _Omitted:
    """The default a planner sees for an optional parameter without one."""

    def __repr__(self) -> str:
        return "..."


_OMITTED = _Omitted()


@dataclass(frozen=True, slots=True)
class _Shown:
    """An annotation shown as its text (inspect prints an annotation's repr)."""

    text: str

    def __repr__(self) -> str:
        return self.text


def schema_tool(name: str, description: str, parameters: Mapping[str, Any] | None,
                call: Callable[..., Any], *, policy: ToolPolicy) -> Tool:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"tool name {name!r} is not an identifier")
    if not callable(call):
        raise TypeError(f"tool {name!r}: call must be a function, got {call!r}")
    schema = _root(name, parameters)
    _refuse_unsupported(name, schema)
    props: Mapping[str, Any] = schema.get("properties", {})
    required = [n for n in props if n in set(schema.get("required", ()))]
    optional = [n for n in props if n not in required]
    check = SchemaCheck.build(name, schema)

    fn = call
    if not inspect.iscoroutinefunction(call) and inspect.iscoroutinefunction(
            getattr(call, "__call__", None)):
        async def fn(**arguments: Any) -> Any:  # an object with an async __call__
            return await call(**arguments)

    # Required parameters may be positional, in the schema's order; optional
    # ones are keywords (a plan names them), as `_call` in the grammar writes them.
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=_annotation(props[n], schema))
              for n in required]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY,
                                 default=props[n].get("default", _OMITTED)
                                 if isinstance(props[n], Mapping) else _OMITTED,
                                 annotation=_annotation(props[n], schema))
               for n in optional]
    shown = {**schema, "title": name}
    if description:
        shown["description"] = description
    return Tool(
        fn=fn,
        name=name,
        description=description or "",
        parameters=shown,
        policy=policy,
        is_async=inspect.iscoroutinefunction(fn),
        param_names=tuple(required + optional),
        required=frozenset(required),
        _validate=check.validate,
        _validate_some=check.validate_some,
        _positional=tuple(required),
        _fast_min=len(required),
        _signature=inspect.Signature(params),
    )


def _root(tool: str, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    if parameters is None or parameters == {}:
        return {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping):
        raise TypeError(f"tool {tool!r}: parameters must be a JSON schema (a dict), "
                        f"got {type(parameters).__name__}")
    schema = dict(parameters)
    if schema.get("type", "object") != "object":
        raise ValueError(f"tool {tool!r}: parameters must be a JSON schema of type 'object' "
                         f"(the arguments object), got type {schema.get('type')!r}")
    props = schema.setdefault("properties", {})
    if not isinstance(props, Mapping):
        raise ValueError(f"tool {tool!r}: 'properties' must be an object")
    for n in props:
        if not n.isidentifier() or keyword.iskeyword(n):
            raise ValueError(f"tool {tool!r}: parameter {n!r} is not an identifier, so a "
                             "plan cannot name it")
    missing = [n for n in schema.get("required", ()) if n not in props]
    if missing:
        raise ValueError(f"tool {tool!r}: required parameter {missing[0]!r} is not among "
                         "its properties")
    return schema


def _refuse_unsupported(tool: str, root: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first construct of `root` plait does not support."""

    def refuse(where: str, what: str) -> ValueError:
        place = f"parameter {where!r}" if where else "parameters"
        return ValueError(f"tool {tool!r}: {place}: JSON-schema {what} is not supported "
                          f"(supported: {', '.join(sorted(SUPPORTED))})")

    def walk(schema: Any, where: str) -> None:
        if isinstance(schema, bool):
            return  # `true` / `false`: any value / no value, both checkable
        if not isinstance(schema, Mapping):
            raise refuse(where, f"schema {schema!r} (not an object)")
        for key, value in schema.items():
            if key.startswith("x-") or key in ANNOTATIONS:
                continue
            if key not in SUPPORTED:
                raise refuse(where, f"construct {key!r}")
            if key == "type":
                kinds = value if isinstance(value, list) else [value]
                bad = [k for k in kinds if k not in _TYPES]
                if bad:
                    raise refuse(where, f"type {bad[0]!r}")
            elif key == "$ref":
                if not isinstance(value, str) or not value.startswith("#/"):
                    raise refuse(where, f"$ref {value!r} (only local '#/...' references)")
            elif key == "allOf":
                if not isinstance(value, list) or len(value) != 1:
                    raise refuse(where, "construct 'allOf' with more than one schema")
                walk(value[0], where)
            elif key in ("anyOf", "oneOf"):
                if not isinstance(value, list) or not value:
                    raise refuse(where, f"construct {key!r} without a list of schemas")
                for member in value:
                    walk(member, where)
            elif key == "items":
                if not isinstance(value, (Mapping, bool)):
                    raise refuse(where, "construct 'items' as a list (tuple validation)")
                walk(value, where)
            elif key in ("properties", "$defs", "definitions"):
                if not isinstance(value, Mapping):
                    raise refuse(where, f"construct {key!r} that is not an object")
                for sub_name, sub in value.items():
                    if key == "properties":
                        walk(sub, f"{where}.{sub_name}" if where else sub_name)
                    else:
                        walk(sub, where or f"{key}/{sub_name}")
            elif key == "additionalProperties" and not isinstance(value, bool):
                walk(value, where)

    walk(root, "")


@dataclass(frozen=True, slots=True)
class SchemaCheck:
    """How a schema tool checks its arguments: jsonschema's validator for the
    schema, and one for the partial case (the schema without its top-level
    `required`). Its `validate` and `validate_some` are the tool's."""

    tool: str
    schema: Mapping[str, Any]
    full: Any  # a jsonschema Validator
    partial: Any

    @classmethod
    def build(cls, tool: str, schema: Mapping[str, Any]) -> SchemaCheck:
        import jsonschema

        kind = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            kind.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "the root"
            raise ValueError(f"tool {tool!r}: invalid JSON schema at {where}: "
                             f"{exc.message}") from None
        partial = {k: v for k, v in schema.items() if k != "required"}
        checker = kind.FORMAT_CHECKER
        return cls(tool, schema, kind(schema, format_checker=checker),
                   kind(partial, format_checker=checker))

    def validate(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The arguments checked, every absent default filled in (a new dict)."""
        values = self._checked(arguments, self.full)
        _fill_defaults(values, self.schema, self.schema)
        return values

    def validate_some(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The values given checked, the others not known yet (a new dict)."""
        return self._checked(arguments, self.partial)

    def _checked(self, arguments: Mapping[str, Any], validator: Any) -> dict[str, Any]:
        import jsonschema

        values = dict(arguments)
        error = jsonschema.exceptions.best_match(validator.iter_errors(values))
        if error is not None:
            raise _argument_error(self.tool, error) from None
        return values


def _argument_error(tool: str, error: Any) -> ToolArgumentError:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = next((n for n in error.validator_value
                        if isinstance(error.instance, Mapping) and n not in error.instance),
                       None)
        if not path:
            return ToolArgumentError(tool, missing, "a value (it is required)")
        inner = ".".join([*path[1:], str(missing)])
        return ToolArgumentError(tool, path[0], f"a value for {inner!r} (it is required)")
    if error.validator == "enum":
        expected = "one of " + ", ".join(repr(v) for v in error.validator_value)
    elif error.validator == "const":
        expected = repr(error.validator_value)
    elif error.validator == "type":
        kinds = error.validator_value
        expected = "a value of type " + (" or ".join(kinds) if isinstance(kinds, list)
                                         else str(kinds))
    else:
        expected = error.message
    if len(path) > 1:
        expected = f"{'.'.join(path[1:])}: {expected}"
    return ToolArgumentError(tool, path[0] if path else None, expected, error.instance)


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    """`schema` with a local `$ref` (or a one-schema `allOf`) followed."""
    for _ in range(32):  # a chain of refs, never a loop
        if not isinstance(schema, Mapping):
            return schema
        if "$ref" in schema:
            target: Any = root
            for part in schema["$ref"].removeprefix("#/").split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            schema = {**{k: v for k, v in schema.items() if k != "$ref"}, **target} \
                if isinstance(target, Mapping) else target
        elif isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "allOf"},
                      **schema["allOf"][0]}
        else:
            return schema
    return schema


def _fill_defaults(values: dict[str, Any], schema: Any, root: Mapping[str, Any]) -> None:
    """Give every absent property that has a `default` its default, in nested objects
    too (a copy: a default must not be shared between calls)."""
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return
    for name, sub in (schema.get("properties") or {}).items():
        sub = _resolve(sub, root)
        if not isinstance(sub, Mapping):
            continue
        if name not in values:
            if "default" in sub:
                values[name] = copy.deepcopy(sub["default"])
        elif isinstance(values[name], dict):
            inner = dict(values[name])
            _fill_defaults(inner, sub, root)
            values[name] = inner


def inline_refs(schema: Any, root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """`schema` with local `$ref`s replaced by what they point at, to a bounded
    depth (a recursive schema ends in `{}`, any value), for a prompt or a grammar."""
    root = schema if root is None else root
    if depth > MAX_SHOWN_DEPTH + 2:
        return {}
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$defs", "definitions"):
            continue
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {n: inline_refs(s, root, depth + 1) for n, s in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = inline_refs(value, root, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out[key] = [inline_refs(s, root, depth + 1) for s in value]
        else:
            out[key] = value
    return out


_SCALAR_NAMES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool",
                 "null": "None"}


def _annotation(schema: Any, root: Mapping[str, Any]) -> Any:
    text = shown_type(schema, root)
    return inspect.Parameter.empty if text is None else _Shown(text)


def shown_type(schema: Any, root: Mapping[str, Any], depth: int = 0) -> str | None:
    """A JSON schema as a planner reads a Python annotation: `str`, `list[int]`,
    `Literal['c', 'f']`, `{"city": str, "days"?: int}`; None for any value."""
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return None
    if "enum" in schema:
        return "Literal[" + ", ".join(repr(v) for v in schema["enum"]) + "]"
    if "const" in schema:
        return f"Literal[{schema['const']!r}]"
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            parts = [shown_type(s, root, depth) or "Any" for s in schema[key]]
            return " | ".join(dict.fromkeys(parts))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(shown_type({**schema, "type": k}, root, depth) or "Any" for k in kind)
    if kind in _SCALAR_NAMES:
        return _SCALAR_NAMES[kind]
    if kind == "array":
        item = schema.get("items")
        inner = shown_type(item, root, depth + 1) if isinstance(item, Mapping) else None
        return f"list[{inner}]" if inner else "list"
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        if not isinstance(props, Mapping) or not props or depth >= MAX_SHOWN_DEPTH:
            return "dict"
        required = set(schema.get("required", ()))
        fields = []
        for n, sub in props.items():
            mark = "" if n in required else "?"
            fields.append(f'"{n}"{mark}: {shown_type(sub, root, depth + 1) or "Any"}')
        return "{" + ", ".join(fields) + "}"
    return None


_NOT_WORD = re.compile(r"\W")


def identifier(name: str) -> str:
    """A foreign tool name (`get-weather`, `fs.read`) as a plait tool name."""
    out = _NOT_WORD.sub("_", name)
    if not out or out[0].isdigit() or keyword.iskeyword(out):
        out = "_" + out
    return out

"""Turning pydantic validation errors into diagnostics that point at the YAML source."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tenantshift.manifest.errors import Diagnostic, format_field
from tenantshift.manifest.loader import Document, NodeMarks
from tenantshift.manifest.schema import Manifest

__all__ = ["validation_diagnostics"]

#: Field names whose values are never echoed in messages.
_SECRET_WORDS = ("password", "secret", "token")

#: Rewordings of pydantic messages that would otherwise name Python classes.
_MESSAGES = {
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "path_type": "expected a path (a string)",
    "missing": "required key is missing",
    "invalid_key": "keys must be strings",
}


#: Bounds, worded like the rest of our messages rather than pydantic's "Input should be".
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be greater than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
    "string_too_short": ("min_length", "must have at least {} character(s)"),
}


def _message(err_type: str, error: ErrorDetails) -> str:
    if err_type in _MESSAGES:
        return _MESSAGES[err_type]
    ctx = error.get("ctx") or {}
    if err_type in _BOUNDS and _BOUNDS[err_type][0] in ctx:
        key, template = _BOUNDS[err_type]
        if err_type == "string_too_short" and ctx[key] == 1:
            return "must not be empty"
        return template.format(ctx[key])
    msg = error["msg"]
    prefix = "Input should be "
    return "expected " + msg[len(prefix) :] if msg.startswith(prefix) else msg


def _is_secret_loc(loc: Sequence[Any]) -> bool:
    # Anything under `auth` counts: a mistyped mapping there may hold credentials.
    return any(
        isinstance(seg, str) and (seg == "auth" or any(w in seg for w in _SECRET_WORDS))
        for seg in loc
    )


def _model_at(path: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (None when it is not a model)."""
    cls: type[BaseModel] = Manifest
    for seg in path:
        field = cls.model_fields.get(seg) if isinstance(seg, str) else None
        if field is None:
            return None
        found = _model_in(field.annotation)
        if found is None:
            return None
        cls = found
    return cls


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is typing.Annotated:  # a tagged union member
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _walk(loc: Sequence[Any], data: Any, err_type: str) -> tuple[list[Any], Any, str | None]:
    """Follow ``loc`` through the parsed data. Returns the path that exists in the data, the
    value there, and the name of a missing key (for 'missing' errors). Segments that are not
    in the data are pydantic's union/validator tags and are dropped."""
    path: list[Any] = []
    current = data
    for i, seg in enumerate(loc):
        if seg == "[key]":
            continue
        in_dict = isinstance(current, dict) and _has_key(current, seg)
        in_list = isinstance(current, list) and isinstance(seg, int) and 0 <= seg < len(current)
        if in_dict or in_list:
            path.append(seg)
            current = current[seg]
        elif err_type == "missing" and i == len(loc) - 1:
            return path, current, str(seg)
    return path, current, None


def _has_key(mapping: dict[Any, Any], key: Any) -> bool:
    try:
        return key in mapping
    except TypeError:
        return False


def _got(value: Any) -> str:
    if isinstance(value, str) and len(value) > 40:
        value = value[:37] + "..."
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _marks_at(doc: Document, path: tuple[Any, ...]) -> NodeMarks | None:
    """The marks of ``path``, else of its nearest ancestor: below an alias (``*name``) only the
    anchor's own path is marked, so an error there points at where the alias is used."""
    for end in range(len(path), -1, -1):
        marks = doc.marks.get(path[:end])
        if marks is not None:
            return marks
    return None


def _convert(error: ErrorDetails, doc: Document, file: str) -> Diagnostic:
    err_type = error["type"]
    loc = error["loc"]
    path, value, missing = _walk(loc, doc.data, err_type)
    marks = _marks_at(doc, tuple(path))
    is_key_error = "[key]" in loc or err_type == "invalid_key"

    hint: str | None = None
    if err_type == "missing" and missing is not None:
        field = format_field([*path, missing])
        message = _MESSAGES["missing"]
        # Point at the mapping that lacks the key: where it is named, or the document start.
        position = (marks.key or marks.value) if marks else None
    elif err_type == "extra_forbidden":
        key = path[-1] if path else loc[-1]
        field = format_field(path)
        message = f"unknown key '{key}'"
        model = _model_at(path[:-1])
        if model is not None:
            valid = list(model.model_fields)
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
        position = (marks.key or marks.value) if marks else None
    else:
        field = format_field(path)
        if err_type in ("value_error", "assertion_error"):
            message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        else:
            message = _message(err_type, error)
            if not _is_secret_loc(loc) and not is_key_error:
                message += f" (got {_got(error['input'])})"
        if marks is None:
            position = None
        elif is_key_error or isinstance(value, dict | list):
            # A problem with a whole mapping/list (or a key) is reported where it is named;
            # a block mapping's own position would be its first child's line.
            position = marks.key or marks.value
        else:
            position = marks.value
    line, column = position if position is not None else (None, None)
    return Diagnostic(file, line, column, field, message, hint)


def validation_diagnostics(exc: ValidationError, doc: Document, file: str) -> list[Diagnostic]:
    """One diagnostic per pydantic error, deduplicated (union members can repeat an error)."""
    out: dict[tuple[Any, ...], Diagnostic] = {}
    for error in exc.errors(include_url=False):
        diag = _convert(error, doc, file)
        out.setdefault((diag.line, diag.column, diag.field, diag.message), diag)
    return list(out.values())

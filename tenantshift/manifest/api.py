"""load_manifest(), manifest_hash() and --var parsing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from tenantshift.canonical import canonical_json
from tenantshift.errors import UsageError
from tenantshift.manifest.deployed import RecordError, with_deployed_hosts
from tenantshift.manifest.errors import Diagnostic, ManifestError
from tenantshift.manifest.loader import LineMap, parse_yaml, render_template, template_environ
from tenantshift.manifest.schema import BASE_DIR, Manifest
from tenantshift.manifest.validation import validation_diagnostics

__all__ = ["load_manifest", "manifest_hash", "manifest_json", "parse_vars"]

#: Bumped when the canonical form changes, so old plans are seen as stale, not as matching.
_HASH_FORMAT = "tenantshift-manifest-hash/1"


def load_manifest(
    path: Path | str,
    variables: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    env_names: Iterable[str] = (),
) -> Manifest:
    """Load, render and validate a manifest.

    The file is rendered as a jinja2 template (``env``: ``environ``; ``var``: ``variables``),
    parsed as YAML and validated. Every problem found at the failing stage is raised together
    as a :class:`ManifestError`.

    ``environ`` defaults to an allow-list of ``os.environ``: ``TENANTSHIFT_*``, ``OS_*`` and the
    names in ``env_names`` (the CLI's ``--env NAME``), so a manifest from a shared repository
    cannot copy CI tokens or other systems' keys into names the plan shows. An explicit
    ``environ`` is used as given.
    """
    path = Path(path)
    file = str(path)  # as the user wrote it, so messages read like their command line
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            [Diagnostic(file, None, None, "", f"cannot read manifest: {exc}")]
        ) from None

    if environ is None:
        visible, hidden = template_environ(os.environ, env_names)
    else:
        visible, hidden = dict(environ), frozenset()
    rendered, diagnostics = render_template(text, file, dict(variables or {}), visible, hidden)
    if rendered is None:
        raise ManifestError(diagnostics)

    # YAML positions are in rendered lines; report them as lines of the file.
    line_map = LineMap(text, rendered)
    doc, diagnostics = parse_yaml(rendered, file)
    if doc is None:
        raise ManifestError(line_map.remap(diagnostics))
    if doc.data is None:
        raise ManifestError(
            [
                Diagnostic(
                    file,
                    None,
                    None,
                    "",
                    "manifest is empty",
                    "it needs at least 'version', 'source' and 'destination'",
                )
            ]
        )
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else f"a {type(doc.data).__name__}"
        line, column = doc.marks[()].value
        line = line_map(line) or line
        raise ManifestError(
            [Diagnostic(file, line, column, "", f"the manifest must be a mapping, not {kind}")]
        )

    absolute = path.resolve()
    try:
        manifest = Manifest.model_validate(doc.data, context={BASE_DIR: absolute.parent})
    except ValidationError as exc:
        # `from None`: the chained ValidationError would print input values, secrets included.
        raise ManifestError(line_map.remap(validation_diagnostics(exc, doc, file))) from None
    manifest._path = absolute
    try:
        return with_deployed_hosts(manifest)
    except RecordError as exc:
        raise ManifestError([Diagnostic(file, None, None, "conversion_hosts", str(exc))]) from None


def _strip_secrets(value: Any, base: Path | None = None) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_secrets(v, base) for k, v in value.items() if not isinstance(v, SecretStr)
        }
    if isinstance(value, list | tuple):
        return [_strip_secrets(v, base) for v in value]
    if isinstance(value, Path):
        # A path written relative to the manifest was joined to its directory when loaded
        # (``schema._resolve_path``, never normalized): hash it as written, so moving the
        # manifest with its files does not make its saved plans stale.
        if base is not None and value.is_relative_to(base):
            return value.relative_to(base).as_posix()
        return value.as_posix()
    return value


def manifest_json(model: BaseModel, base: Path | None = None) -> str:
    """The manifest as canonical JSON (sorted keys, no whitespace), secrets left out entirely.
    This is what :func:`manifest_hash` hashes; nothing secret can reach a plan through it.
    ``base``: the manifest's directory; paths under it are written relative to it."""
    # Python mode keeps SecretStr objects recognisable, so they can be dropped by type rather
    # than by guessing field names.
    data = _strip_secrets(model.model_dump(mode="python"), base)
    return canonical_json(data, ensure_ascii=False)


def manifest_hash(manifest: Manifest) -> str:
    """sha256 hex digest of the manifest's canonical form, secrets excluded. A saved plan
    records it; a different hash at apply time means the manifest changed since the plan.
    Where the manifest lives is not part of it: relative paths are hashed as written."""
    base = manifest.path.parent if manifest.path is not None else None
    payload = f"{_HASH_FORMAT}\n{manifest_json(manifest, base)}".encode()
    return hashlib.sha256(payload).hexdigest()


def parse_vars(items: Iterable[str]) -> dict[str, str]:
    """Parse ``--var key=value`` arguments (the value may contain '='; the last one wins)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--var expects key=value, got {item!r}")
        out[key] = value
    return out

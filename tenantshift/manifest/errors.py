"""Diagnostics: what went wrong in a manifest, and where (file:line:column and field path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tenantshift.errors import TenantshiftError

__all__ = ["Diagnostic", "ManifestError", "format_field"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a manifest.

    ``line`` and ``column`` are 1-based; either may be ``None`` when the source cannot tell
    (an empty file has no line; a jinja error knows its line but not its column).
    """

    file: str
    line: int | None
    column: int | None
    field: str
    """Dotted path of the offending field, e.g. ``select.network.include[0]``; empty when the
    problem is not tied to a field (template and YAML syntax errors)."""
    message: str
    hint: str | None = None

    @property
    def location(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        text = f"{self.location}: "
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.hint:
            text += f"; {self.hint}"
        return text


class ManifestError(TenantshiftError):
    """The manifest could not be loaded. ``str()`` gives one line per diagnostic."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("ManifestError needs at least one diagnostic")
        # Sorted so that output is stable and reads top to bottom like the file.
        self.diagnostics: list[Diagnostic] = sorted(
            diagnostics, key=lambda d: (d.line or 0, d.column or 0, d.field, d.message)
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


def format_field(path: Sequence[str | int]) -> str:
    """Render a location path as ``a.b[0].c``; keys that are not plain words are quoted
    (``map.flavors["m1.small"]``) so that dots inside keys stay unambiguous."""
    out = ""
    for seg in path:
        if isinstance(seg, int) and not isinstance(seg, bool):
            out += f"[{seg}]"
        elif isinstance(seg, str) and seg and seg.replace("_", "a").replace("-", "a").isalnum():
            out += f".{seg}" if out else seg
        else:
            out += f'["{seg}"]' if isinstance(seg, str) else f"[{seg!r}]"
    return out

"""The migration manifest: schema, jinja2 rendering, YAML with line numbers, diagnostics.

The lowest layer of tenantshift: it imports nothing else from the package.
"""

from tenantshift.manifest.api import load_manifest, manifest_hash, manifest_json, parse_vars
from tenantshift.manifest.errors import Diagnostic, ManifestError
from tenantshift.manifest.schema import (
    DEFAULT_PAIR,
    KINDS,
    AnyConversionHosts,
    Auth,
    CloudRef,
    ConversionHost,
    ConversionHosts,
    ConversionPair,
    ConversionPool,
    Deploy,
    KindSelect,
    Manifest,
    Map,
    Options,
    Select,
    Workloads,
)

__all__ = [
    "DEFAULT_PAIR",
    "KINDS",
    "AnyConversionHosts",
    "Auth",
    "CloudRef",
    "ConversionHost",
    "ConversionHosts",
    "ConversionPair",
    "ConversionPool",
    "Deploy",
    "Diagnostic",
    "KindSelect",
    "Manifest",
    "ManifestError",
    "Map",
    "Options",
    "Select",
    "Workloads",
    "load_manifest",
    "manifest_hash",
    "manifest_json",
    "parse_vars",
]

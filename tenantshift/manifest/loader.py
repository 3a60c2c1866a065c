"""Turning manifest text into plain data: jinja2 rendering, then YAML parsing that remembers
where every node was written, so that later validation errors can point at file:line:column.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.sandbox
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tenantshift.manifest.errors import Diagnostic, format_field

__all__ = [
    "ENV_PREFIXES",
    "DocPath",
    "Document",
    "LineMap",
    "NodeMarks",
    "parse_yaml",
    "render_template",
    "template_environ",
]

#: A location inside the parsed document: mapping keys and sequence indices.
DocPath = tuple[Any, ...]

_TEMPLATE_FILENAME = "<template>"  # what jinja names code compiled by from_string()
_MERGE_TAG = "tag:yaml.org,2002:merge"

#: Environment variables templates see without being named: tenantshift's own and the
#: OpenStack client's. Anything else (CI tokens, other systems' keys) needs ``--env NAME``.
ENV_PREFIXES = ("TENANTSHIFT_", "OS_")

#: A manifest is a few hundred nodes; these bound what a hostile one (YAML aliases referring
#: to aliases, thousands of nested brackets) can cost before validation.
MAX_NODES = 100_000
MAX_DEPTH = 64


# --------------------------------------------------------------------------- jinja2


class _Namespace(dict[str, str]):
    """``env`` / ``var`` in templates. A dict (so ``env['X']`` and ``env.get('X', 'd')`` work)
    that knows its own name, so an undefined lookup can be reported as ``env.X``."""

    def __init__(self, name: str, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.ns_name = name


class _StrictUndefined(jinja2.StrictUndefined):
    """StrictUndefined whose message names the full variable (``env.SRC_PASSWORD``) instead of
    jinja's "'dict object' has no attribute 'SRC_PASSWORD'"."""

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        name = self._undefined_name
        if isinstance(obj, _Namespace):
            return f"undefined variable '{obj.ns_name}.{name}'"
        if obj is jinja2.utils.missing and name is not None:
            return f"undefined variable '{name}'"
        return str(super()._undefined_message)


def template_environ(
    environ: Mapping[str, str], names: Iterable[str] = ()
) -> tuple[dict[str, str], frozenset[str]]:
    """The part of ``environ`` templates may read (``ENV_PREFIXES`` and ``names``), and the
    names left out, so that an undefined ``env.X`` can say X is set but not allowed."""
    wanted = set(names)
    allowed = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES) or k in wanted}
    return allowed, frozenset(environ) - set(allowed)


def _hint_for_undefined(message: str, hidden: frozenset[str] = frozenset()) -> str | None:
    prefix = "undefined variable '"
    if not message.startswith(prefix):
        return None
    name = message[len(prefix) : -1]
    ns, _, key = name.partition(".")
    if ns == "env" and key in hidden:
        return (
            f"{key} is set, but templates see only {', '.join(p + '*' for p in ENV_PREFIXES)} "
            f"and the variables named with --env: pass --env {key}"
        )
    if ns == "env" and key:
        return f"set the environment variable {key}"
    if ns == "var" and key:
        return f"pass --var {key}=VALUE"
    if not key:
        return "templates can use 'env' (environment variables) and 'var' (--var key=value)"
    return None


def _template_line(tb: types.TracebackType | None) -> int | None:
    """The template line of the innermost template frame. jinja rewrites tracebacks so that
    frames of compiled template code carry the template's own line numbers."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_template(
    text: str,
    file: str,
    variables: Mapping[str, str],
    environ: Mapping[str, str],
    hidden: frozenset[str] = frozenset(),
) -> tuple[str | None, list[Diagnostic]]:
    """Render the manifest as a jinja2 template with ``env`` and ``var`` in its context.

    Sandboxed, because a manifest from a shared repository should not be able to reach Python
    internals on the operator's machine. ``trim_blocks`` stays off and trailing newlines are
    kept so that rendered lines match the file as closely as possible; :class:`LineMap`
    handles the rest. ``hidden``: environment variables left out of ``environ`` on purpose
    (see :func:`template_environ`), only for the hint.
    """
    env = jinja2.sandbox.SandboxedEnvironment(
        undefined=_StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    try:
        template = env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        return None, [
            Diagnostic(file, exc.lineno, None, "", f"template syntax error: {exc.message}")
        ]
    except RecursionError:  # jinja's parser recurses once per nested bracket
        return None, [Diagnostic(file, None, None, "", "template syntax error: nested too deeply")]
    context = {"env": _Namespace("env", environ), "var": _Namespace("var", variables)}
    try:
        return template.render(context), []
    except jinja2.UndefinedError as exc:
        message = str(exc.message)
        line = _template_line(exc.__traceback__)
        hint = _hint_for_undefined(message, hidden)
        return None, [Diagnostic(file, line, None, "", message, hint)]
    except Exception as exc:  # filters and tests can raise anything; report, don't crash
        line = _template_line(exc.__traceback__)
        detail = f"{type(exc).__name__}: {exc}"
        return None, [Diagnostic(file, line, None, "", f"template error: {detail}")]


class LineMap:
    """Maps a line of the rendered text back to the template line it came from.

    Rendering can add or remove lines (a false ``{% if %}`` branch vanishes, a multi-line value
    expands), so YAML positions are in rendered lines. Lines without template syntax come out
    unchanged, so aligning the two texts line by line recovers the mapping: an unchanged line
    maps exactly; a changed line maps to the corresponding line of its changed region,
    clamped to that region (a 1-line substitution that expanded to 3 lines maps all 3 to it).
    """

    def __init__(self, template: str, rendered: str) -> None:
        self._blocks: list[tuple[int, int, int, int]] = []  # (t_start, t_end, r_start, r_end)
        if template != rendered:
            t_lines, r_lines = template.splitlines(), rendered.splitlines()
            matcher = difflib.SequenceMatcher(None, t_lines, r_lines, autojunk=False)
            self._blocks = [(i1, i2, j1, j2) for _, i1, i2, j1, j2 in matcher.get_opcodes()]

    def __call__(self, line: int | None) -> int | None:
        if line is None or not self._blocks:
            return line
        r = line - 1
        for t_start, t_end, r_start, r_end in self._blocks:
            if r_start <= r < r_end:
                return min(t_start + (r - r_start), max(t_end - 1, t_start)) + 1
        return line  # past the end (e.g. the stream-end mark): leave as is

    def remap(self, diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
        return [dataclasses.replace(d, line=self(d.line)) for d in diagnostics]


# --------------------------------------------------------------------------- YAML with marks


@dataclass(frozen=True, slots=True)
class NodeMarks:
    """Where a node was written: its key (for mapping values) and its value, as 1-based
    (line, column)."""

    key: tuple[int, int] | None
    value: tuple[int, int]


@dataclass
class Document:
    """Parsed YAML plus the marks of every node, addressed by path."""

    data: Any
    marks: dict[DocPath, NodeMarks] = field(default_factory=dict)


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader: plain data only, no arbitrary Python objects."""


_QUOTE_HINT = 'quote substituted values (key: "{{ env.NAME }}") or use | tojson'

#: YAML problems whose text quotes a piece of the document, said without it: an unquoted
#: substitution starting with '*', '&' or '!' is read as an alias, anchor or tag, and its
#: name, a rendered secret, would be printed.
_GENERIC_PROBLEMS = (
    ("found undefined alias", "a value starts with '*', which YAML reads as an alias"),
    ("found duplicate anchor", "an anchor ('&name') is defined twice"),
    ("could not determine a constructor for the tag", "a value starts with '!', an unknown tag"),
    ("found unknown tag handle", "a value starts with '!', an unknown tag"),
)
#: Quoted pieces of text in PyYAML messages (repr() of tokens and characters).
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
#: What may stay: one character, or a token name such as '<block end>'.
_HARMLESS = re.compile(r"^(['\"])(?:.|\\.|<[a-z ]+>)\1$")


def _safe_problem(text: str) -> tuple[str, str | None]:
    """PyYAML's problem text without pieces of the document, and a hint when it has one."""
    for start, generic in _GENERIC_PROBLEMS:
        if text.startswith(start):
            return generic, _QUOTE_HINT
    return _QUOTED.sub(lambda m: m[0] if _HARMLESS.match(m[0]) else "a value", text), None


def _yaml_diagnostic(file: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    # Built from problem/context only: str(exc) would include a snippet of the offending
    # line, and the problem itself can quote a token of it; either may hold a rendered secret.
    mark = exc.problem_mark or exc.context_mark
    line, column = _pos(mark) if mark is not None else (None, None)
    problem, hint = _safe_problem(exc.problem or exc.context or "syntax error")
    message = f"invalid YAML: {problem}"
    if exc.context and exc.problem:
        message += f" ({_safe_problem(exc.context)[0]}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            cline, ccol = _pos(exc.context_mark)
            message += f" started at line {cline}, column {ccol}"
        message += ")"
    return Diagnostic(file, line, column, "", message, hint)


def _reader_diagnostic(file: str, text: str, exc: yaml.reader.ReaderError) -> Diagnostic:
    """Control characters and the like: PyYAML gives a character offset, not a line."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    character = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return Diagnostic(
        file, line, column, "", f"invalid YAML: {exc.reason} (character #x{character:04x})"
    )


class _TooLarge(Exception):
    """The document is bigger or deeper than any manifest needs to be."""


class _MarkCollector:
    """Walks the composed node graph before construction, recording marks by path and
    reporting duplicate mapping keys, which PyYAML would otherwise silently let the last one
    win (a classic source of "I changed it but nothing happened")."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.marks: dict[DocPath, NodeMarks] = {}
        self.diagnostics: list[Diagnostic] = []
        # Node ids already walked. An alias is the same node object as its anchor: walking it
        # again per path costs the product of every alias level (10 aliases of 10 aliases of
        # ... is exponential in a few hundred bytes), and also loops on a recursive alias.
        # An alias gets the mark of where it is written; what lies below it is marked once,
        # under the anchor's path.
        self._seen: set[int] = set()

    def walk(self, node: Node, path: DocPath, key: tuple[int, int] | None) -> None:
        self.marks.setdefault(path, NodeMarks(key, _pos(node.start_mark)))
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        if len(self._seen) > MAX_NODES:
            raise _TooLarge(f"more than {MAX_NODES} values")
        if len(path) > MAX_DEPTH:
            raise _TooLarge(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, MappingNode):
            self._walk_mapping(node, path)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i), None)

    def _key(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            return None  # complex keys are rejected later by the constructor
        value = self.loader.construct_object(node)
        try:
            hash(value)
        except TypeError:
            return None
        return value

    def _walk_mapping(self, node: MappingNode, path: DocPath) -> None:
        seen: dict[Any, int] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # `<<: *anchor` keys are meant to be overridden; walk them after the
                # explicit keys so that explicit marks win.
                if isinstance(value_node, SequenceNode):
                    merged.extend(value_node.value)
                else:
                    merged.append(value_node)
                continue
            key = self._key(key_node)
            if key is None:
                continue
            line, column = _pos(key_node.start_mark)
            if key in seen:
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        line,
                        column,
                        format_field((*path, key)),
                        f"duplicate key '{key}' (first given at line {seen[key]})",
                        "YAML keeps only the last one; remove or merge the duplicates",
                    )
                )
                continue
            seen[key] = line
            self.walk(value_node, (*path, key), (line, column))
        for source in merged:
            if isinstance(source, MappingNode):
                self._walk_merged(source, path)

    def _walk_merged(self, node: MappingNode, path: DocPath) -> None:
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key is not None and (*path, key) not in self.marks:
                self.walk(value_node, (*path, key), _pos(key_node.start_mark))


def parse_yaml(text: str, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one YAML document, keeping the (line, column) of every key and value."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        return None, [_reader_diagnostic(file, text, exc)]
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(None), []
        collector = _MarkCollector(loader, file)
        try:
            collector.walk(node, (), None)
        except _TooLarge as exc:
            return None, [Diagnostic(file, None, None, "", f"the manifest is too large: {exc}")]
        if collector.diagnostics:
            return None, collector.diagnostics
        data = loader.construct_document(node)
        return Document(data, collector.marks), []
    except yaml.MarkedYAMLError as exc:
        return None, [_yaml_diagnostic(file, exc)]
    except yaml.reader.ReaderError as exc:
        return None, [_reader_diagnostic(file, text, exc)]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(file, None, None, "", f"invalid YAML: {exc}")]
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        message = f"the manifest is too large: nested more than {MAX_DEPTH} levels deep"
        return None, [Diagnostic(file, None, None, "", message)]
    finally:
        loader.dispose()

"""Limits on GraphQL queries, so one request cannot hold the server.

The query's length and its bracket nesting are checked before it is parsed (the parser is
recursive and takes time in proportion to the text); its depth and size, counted with fragments
expanded, once it is parsed, before it is validated (validation's cost grows with the square of
the number of fields).
"""

from __future__ import annotations

from collections import Counter

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

# The dashboard's largest query is under 1 KiB, a full introspection query about 2 KiB.
MAX_QUERY_CHARS = 16 * 1024
# Brackets ({ ( [) open at once anywhere in the text, before parsing.
MAX_QUERY_NESTING = 32
# Fields within fields, fragments expanded (the introspection query needs 13).
MAX_QUERY_DEPTH = 20
# Fields selected in all, fragments expanded wherever they are spread (introspection: 220).
MAX_QUERY_FIELDS = 500
# Selections of one response name at one level (fragments merged): validation compares each
# pair of them, so 250 took 0.2 s.
MAX_SAME_NAME = 20
# Error messages are cut to this length: a huge name in a query is not echoed back whole.
MAX_ERROR_CHARS = 500


class QueryRefused(ValueError):
    """A query over a limit; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_text(query: str) -> None:
    """Refuse a query too long or nested too deeply to parse."""
    if len(query) > MAX_QUERY_CHARS:
        raise QueryRefused(f"The query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}", 413)
    if _nesting(query) > MAX_QUERY_NESTING:
        raise QueryRefused(f"The query nests brackets more than {MAX_QUERY_NESTING} levels deep")


def _nesting(query: str) -> int:
    depth = deepest = 0
    for ch in query:
        if ch in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "})]":
            depth -= 1
    return deepest


def check_document(document: DocumentNode) -> None:
    """Refuse a query whose selections are too deep or too many (before validation, whose cost
    grows with the square of the fields selected)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    counter = _Counter(fragments)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            counter.walk(definition.selection_set, 1, Counter())


class _Counter:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.fields = 0
        self.spreading: set[str] = set()  # a fragment within itself is validation's to refuse

    def walk(self, selections: SelectionSetNode | None, depth: int, names: Counter[str]) -> None:
        """Count the fields of ``selections``; ``names`` counts the response names of the level
        they belong to (fragments add to their parent's level)."""
        if selections is None:
            return
        for node in selections.selections:
            if isinstance(node, FieldNode):
                self.fields += 1
                if self.fields > MAX_QUERY_FIELDS:
                    raise QueryRefused(f"The query selects more than {MAX_QUERY_FIELDS} fields "
                                       "(counting each fragment wherever it is spread)")
                key = (node.alias or node.name).value
                names[key] += 1
                if names[key] > MAX_SAME_NAME:
                    raise QueryRefused(f"The query selects {key[:50]!r} more than {MAX_SAME_NAME} times in one place")
                if node.selection_set is not None:
                    if depth >= MAX_QUERY_DEPTH:
                        raise QueryRefused(f"The query nests fields more than {MAX_QUERY_DEPTH} levels deep")
                    self.walk(node.selection_set, depth + 1, Counter())
            elif isinstance(node, InlineFragmentNode):
                self.walk(node.selection_set, depth, names)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in self.spreading:
                    self.spreading.add(name)
                    self.walk(fragment.selection_set, depth, names)
                    self.spreading.discard(name)


def short(message: str) -> str:
    if len(message) <= MAX_ERROR_CHARS:
        return message
    return message[:MAX_ERROR_CHARS] + f"... ({len(message) - MAX_ERROR_CHARS} more characters)"

"""Random expressions and events for the property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pyngest.expr.syntax import literal_of, unparse

FIELDS = ("a", "b", "n", "s")
LITERALS: list[Any] = ["x", "y", "", "m", 0, 1, 2, -1, 1.0, 1.5, True, False]
_MISSING = object()


def _lit(value: Any) -> str:
    return unparse(literal_of(value))


def atoms(var: str) -> st.SearchStrategy[str]:
    # Each field written three ways; plain sampled_from keeps generation cheap.
    path = st.sampled_from(
        [p for f in FIELDS for p in (f"{var}.data.{f}", f'{var}["data"].{f}', f'{var}.data["{f}"]')]
    )
    lit = st.sampled_from([_lit(v) for v in LITERALS])
    op = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.tuples(path, op, lit).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(lit, op, path).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(path, st.lists(lit, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]} in [{', '.join(t[1])}]"
        ),
        path.map(lambda p: f"{p} == null"),
        st.sampled_from(FIELDS).map(lambda f: f"has({var}.data.{f})"),
        path,  # a bare value: truthiness in && and ||
        path.map(lambda p: f"size({p}) > 0"),
        path.map(lambda p: f'lowercase({p}) == "x"'),
        st.tuples(path, path).map(lambda t: f"{t[0]} == {t[1]}"),
        st.sampled_from(["true", "false"]),
    )


def expressions(var: str) -> st.SearchStrategy[str]:
    return st.recursive(
        atoms(var),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda t: f"({t[0]}) && ({t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}) || ({t[1]})"),
            inner.map(lambda e: f"!({e})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}) ? ({t[1]}) : ({t[2]})"),
        ),
        max_leaves=5,
    )


VALUES = st.one_of(
    st.just(_MISSING), st.none(), st.sampled_from(LITERALS), st.just(["x"]), st.just({"k": 1})
)


def events(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(VALUES, min_size=len(FIELDS), max_size=len(FIELDS)).map(
        lambda values: {
            "name": name,
            "data": {f: v for f, v in zip(FIELDS, values, strict=True) if v is not _MISSING},
        }
    )

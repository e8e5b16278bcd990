"""The set-wise statement forms (store/postgres/forms.py): every batch gets a form that has all
of its kinds of rows, the fewest such; the common shapes get a form of exactly their kinds."""

from __future__ import annotations

from itertools import combinations

from pyngest.server.store.postgres.forms import FORMS, KINDS, form_of, kinds_of, statement


def rows_of(kinds: set[str]) -> dict[str, list[dict[str, object]]]:
    rows: dict[str, list[dict[str, object]]] = {k: [{}] for k in kinds if k not in ("keys", "del")}
    if "runs" in kinds:
        rows["runs"] = [{"k": "key" if "keys" in kinds else None}]
    if "del" in kinds:
        rows["drj"] = [{}]
    return rows


def test_every_batch_gets_the_smallest_form_with_all_its_kinds() -> None:
    for n in range(len(KINDS) + 1):
        for chosen in combinations(KINDS, n):
            kinds = set(chosen)
            if "keys" in kinds and "runs" not in kinds:
                continue  # keys are those of run creations
            rows = rows_of(kinds)
            assert kinds_of(rows) == kinds
            form = FORMS[form_of(rows)]
            assert kinds <= form
            assert all(len(f) >= len(form) for f in FORMS if kinds <= f)


def test_the_shapes_of_runs_have_forms_of_their_own() -> None:
    for shape in ("ev runs enq hist", "del enq upd step hist", "del ev upd hist", "del ev upd step hist",
                  "upd step hist"):
        assert FORMS[form_of(rows_of(set(shape.split())))] == frozenset(shape.split())


def test_a_form_starts_only_the_sub_statements_of_its_kinds() -> None:
    step = statement(frozenset({"upd", "step", "hist"}))
    assert "INSERT INTO steps" in step and "UPDATE runs" in step and "INSERT INTO history" in step
    for absent in ("INSERT INTO events", "INSERT INTO runs", "INSERT INTO jobs", "DELETE FROM jobs", "FROM skipped"):
        assert absent not in step
    assert "FROM skipped" in statement(frozenset({"ev", "runs", "keys", "enq", "hist"}))
    assert "FROM skipped" not in statement(frozenset({"ev", "runs", "enq", "hist"}))

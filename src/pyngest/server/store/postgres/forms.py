"""The statement forms of ``pyngest_apply_setwise``: one per batch shape, each starting only the
sub-statements its shape needs.

A set-wise batch is written by one statement of sub-statements (CTEs), one per kind of row.
PostgreSQL starts every data-modifying sub-statement of a statement, those with no rows too
(opening its table and indexes, compiling its expressions), and at these batch sizes that
start-up costs more than the rows' writes: one statement of every kind made the set-wise path
dearer in PostgreSQL's own execution time than the op-by-op path it replaced. So the statement
comes in forms, each of a set of kinds (:data:`FORMS`): the writer names the cheapest form that
covers its batch's kinds (:func:`form_of`), and the function runs that form's statement, a
static one whose plan PL/pgSQL caches for the session like any other.

Every form is built from the same sub-statements (:func:`statement`), so the forms differ only
by the ones they leave out, and a form applies a batch of fewer kinds than its own exactly as a
smaller form would (a sub-statement of a kind without rows writes nothing). The last form has
every kind: batches of shapes not listed use it.
"""

from __future__ import annotations

from typing import Any

# The kinds of rows a form is made for. "del": jobs deleted by id or by run (one DELETE);
# "keys": run creations with idempotency keys (their claims, and the skips of runs whose key is
# held, which every other sub-statement then leaves out).
KINDS = ("ev", "runs", "keys", "del", "enq", "upd", "step", "hist")

# The forms, by the shapes runs are made of (bench/writes.py reports the shapes it sees):
FORMS: list[frozenset[str]] = [frozenset(f.split()) for f in (
    "ev",                          # events that start no run with them
    "ev runs enq hist",            # an event with the runs it starts
    "ev runs keys enq hist",       # ... with their idempotency keys
    "step hist",                   # a checkpointed step
    "upd step hist",               # ... the run's first (its start)
    "del enq upd step hist",       # a step: its job done, the next queued (a sleep: no step)
    "del ev upd hist",             # a run's end, with its inngest/function.finished event
    "del ev upd step hist",        # a last step with the end
    "ev del enq upd step hist",    # anything without run creations
    " ".join(KINDS),               # anything
)]
# SQL of the default environment, for events without one
_DEFAULT_ENV = "'00000000-0000-4000-b000-000000000000'"


def kinds_of(rows: dict[str, Any]) -> frozenset[str]:
    """The kinds of a batch's rows (setwise.py's), as :data:`FORMS` names them."""
    kinds: set[str] = {k for k in ("ev", "runs", "enq", "upd", "step", "hist") if k in rows}
    if "drj" in rows or "djob" in rows:
        kinds.add("del")
    if any(r["k"] is not None for r in rows.get("runs", ())):
        kinds.add("keys")
    return frozenset(kinds)


def form_of(rows: dict[str, Any]) -> int:
    """The index in :data:`FORMS` of the form with the fewest kinds that has all of the batch's."""
    kinds = kinds_of(rows)
    return min((i for i, f in enumerate(FORMS) if kinds <= f), key=lambda i: len(FORMS[i]))


def _where(*conds: str | None) -> str:
    kept = [c for c in conds if c]
    return f"WHERE {' AND '.join(kept)}" if kept else ""


def statement(kinds: frozenset[str]) -> str:
    """The statement of one form: its sub-statements, then the batch's result object into v_res.

    Its parameters are pyngest_apply_setwise's (p_batch, p_blobs, p_b0, p_now, p_checked).
    """
    keys = "keys" in kinds

    def unskipped(rid: str) -> str | None:
        """Rows of runs whose creation was skipped are left out (only where keys can skip)."""
        return f"NOT EXISTS (SELECT 1 FROM skipped AS s WHERE s.rid = {rid})" if keys else None

    ctes: list[str] = []
    if "ev" in kinds:
        ctes.append(f"""ev AS (
    INSERT INTO events (internal_id, name, event_id, ts, received_ms, source, body, env_id, started)
    SELECT e->>0, e->>1, e->>2, (e->>3)::bigint, (e->>4)::bigint, e->>5, p_blobs[-p_b0 + (e->>6)::integer],
           COALESCE(e->>7, {_DEFAULT_ENV}), COALESCE((e->>8)::boolean, false)
    FROM jsonb_array_elements(p_batch->'ev') WITH ORDINALITY AS x(e, i)
    ORDER BY i
    ON CONFLICT (internal_id) DO NOTHING
    RETURNING internal_id, seq
)""")
    if keys:
        ctes.append("""-- a run's idempotency key: claimed unless an unexpired entry holds it (then the run and
-- every other op about it are skipped)
claimed AS (
    INSERT INTO idempotency (key, run_id, expires_ms)
    SELECT r->>'k', r->>'rid', (r->>'x')::bigint
    FROM jsonb_array_elements(p_batch->'runs') AS r WHERE r->>'k' IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET run_id = EXCLUDED.run_id, expires_ms = EXCLUDED.expires_ms
        WHERE idempotency.expires_ms <= p_now
    RETURNING run_id
),
skipped AS (
    SELECT r->>'rid' AS rid, r->>'k' AS key FROM jsonb_array_elements(p_batch->'runs') AS r
    WHERE r->>'k' IS NOT NULL AND NOT EXISTS (SELECT 1 FROM claimed AS c WHERE c.run_id = r->>'rid')
)""")
    if "runs" in kinds:
        ctes.append(f"""created AS (
    INSERT INTO runs (id, shard, fn_id, app_id, fn_version, status, event_ids, batch_id, cron,
                      original_run_id, queued_ms, started_ms, ended_ms, output, version,
                      force_step_plan, pending, state_bytes, attrs, env_id)
    SELECT o->>'rid', (o->>'sh')::integer, f->>'fn_id', f->>'app_id', (f->>'fn_version')::integer,
           f->>'status', f->'event_ids', f->>'batch_id', f->>'cron', f->>'original_run_id',
           (f->>'queued_ms')::bigint, (f->>'started_ms')::bigint, (f->>'ended_ms')::bigint,
           p_blobs[-p_b0 + (f->>'output')::integer], (f->>'version')::integer,
           (f->>'force_step_plan')::boolean, NULLIF(f->'pending', 'null'),
           (f->>'state_bytes')::bigint, NULLIF(f->'attrs', 'null'),
           COALESCE(f->>'env_id', {_DEFAULT_ENV})
    FROM jsonb_array_elements(p_batch->'runs') WITH ORDINALITY AS x(o, i), LATERAL (SELECT o->'r' AS f) AS r
    {_where(unskipped("o->>'rid'"))}
    ORDER BY i
),
linked AS (
    INSERT INTO run_events (event_internal_id, run_id)
    SELECT e, o->>'rid' FROM jsonb_array_elements(p_batch->'runs') AS o,
                             jsonb_array_elements_text(o->'r'->'event_ids') AS e
    {_where(unskipped("o->>'rid'"))}
    ON CONFLICT DO NOTHING
)""")
    if "del" in kinds:
        ctes.append(f"""-- (Rows of the tables are found through "= ANY (ARRAY(...))", an index lookup whatever the
-- plan cached for this session guessed of the batch's size and the table's.)
-- Jobs deleted by id ('djob') and a run's jobs but the one kept ('drj'), in one DELETE. Done
-- one by one, a job goes with the first of the batch's ops that matches it (its position
-- "i"): by id, its shard is fenced (below, if the group has not named it); by its run, it is
-- reported among the deleted jobs.
drj AS (
    SELECT d->>'rid' AS rid, d->>'keep' AS keep, (d->>'i')::integer AS i
    FROM jsonb_array_elements(p_batch->'drj') AS d
    {_where(unskipped("d->>'rid'"))}
),
djob AS (
    SELECT d->>'id' AS id, (d->>'i')::integer AS i FROM jsonb_array_elements(p_batch->'djob') AS d
),
cleared AS (
    DELETE FROM jobs AS j
    WHERE j.id = ANY (ARRAY(SELECT id FROM djob))
       OR (j.run_id = ANY (ARRAY(SELECT rid FROM drj))
           AND EXISTS (SELECT 1 FROM drj WHERE drj.rid = j.run_id AND (drj.keep IS NULL OR j.id <> drj.keep)))
    RETURNING j.id, j.shard,
        (SELECT min(i) FROM djob WHERE djob.id = j.id) AS by_id,
        (SELECT min(i) FROM drj WHERE drj.rid = j.run_id AND (drj.keep IS NULL OR j.id <> drj.keep)) AS by_run
)""")
    if "enq" in kinds:
        ctes.append(f"""queued AS (
    INSERT INTO jobs (id, shard, run_id, kind, due_ms, priority, step_id, attempt, payload, remote)
    SELECT o->>'id', (o->>'js')::integer, o->>'rid', o->>'k', (o->>'d')::bigint, (o->>'pr')::integer,
           o->>'s', (o->>'a')::integer, NULLIF(o->'pl', 'null'), (o->>'rm')::boolean
    FROM jsonb_array_elements(p_batch->'enq') WITH ORDINALITY AS x(o, i)
    {_where(unskipped("o->>'rid'"))}
    ORDER BY i
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)""")
    if "upd" in kinds:
        ctes.append("updated AS (\n    UPDATE runs SET\n" + ",\n".join(
            f"        {col} = CASE WHEN u.f ? '{col}' THEN {new} ELSE runs.{col} END" for col, new in _UPDATED)
            + f"""
    FROM (SELECT o->>'rid' AS rid, o->'f' AS f FROM jsonb_array_elements(p_batch->'upd') AS o
          {_where(unskipped("o->>'rid'"))}) AS u
    WHERE runs.id = ANY (ARRAY(SELECT o->>'rid' FROM jsonb_array_elements(p_batch->'upd') AS o))
      AND runs.id = u.rid
)""")
    if "step" in kinds:
        ctes.append(f"""saved AS (
    INSERT INTO steps (run_id, step_id, pos, value)
    SELECT o->>'rid', o->>'s', (o->>'p')::integer, p_blobs[-p_b0 + (o->>'v')::integer]
    FROM jsonb_array_elements(p_batch->'step') WITH ORDINALITY AS x(o, i)
    {_where(unskipped("o->>'rid'"))}
    ORDER BY i
    ON CONFLICT DO NOTHING
)""")
    if "hist" in kinds:
        ctes.append(f"""recorded AS (
    INSERT INTO history (run_id, at_ms, kind, step_id, name, attempt, data)
    SELECT o->>'rid', (o->>'at')::bigint, o->>'k', o->>'s', o->>'n', (o->>'a')::integer,
           p_blobs[-p_b0 + (o->>'v')::integer]
    FROM jsonb_array_elements(p_batch->'hist') WITH ORDINALITY AS x(o, i)
    {_where(unskipped("o->>'rid'"))}
    ORDER BY i
)""")
    result = {
        "created": f"""(SELECT COALESCE(jsonb_agg(o->>'rid' ORDER BY i), '[]')
                FROM jsonb_array_elements(p_batch->'runs') WITH ORDINALITY AS x(o, i)
                {_where(unskipped("o->>'rid'"))})""" if "runs" in kinds else "'[]'::jsonb",
        "skipped": "(SELECT COALESCE(jsonb_object_agg(rid, key), '{}') FROM skipped)" if keys else "'{}'::jsonb",
        "seqs": "(SELECT COALESCE(jsonb_object_agg(internal_id, seq), '{}') FROM ev)" if "ev" in kinds
                else "'{}'::jsonb",
        "ignored": f"""(SELECT COALESCE(jsonb_agg(o->>'id'), '[]') FROM jsonb_array_elements(p_batch->'enq') AS o
                {_where(unskipped("o->>'rid'"), "NOT EXISTS (SELECT 1 FROM queued AS q WHERE q.id = o->>'id')")})"""
                   if "enq" in kinds else "'[]'::jsonb",
        "djobs": "(SELECT COALESCE(jsonb_agg(id), '[]') FROM cleared WHERE by_id IS NULL OR by_run < by_id)"
                 if "del" in kinds else "'[]'::jsonb",
        "fence": """(SELECT COALESCE(jsonb_agg(DISTINCT shard), '[]') FROM cleared
              WHERE by_id IS NOT NULL AND (by_run IS NULL OR by_id < by_run) AND shard <> ALL (p_checked))"""
                 if "del" in kinds else "'[]'::jsonb",
        "stored": "(SELECT count(*) FROM ev)" if "ev" in kinds else "0",
    }
    select = "SELECT jsonb_build_object(\n    " + ",\n    ".join(f"'{k}', {v}" for k, v in result.items()) + ")"
    text = "WITH\n" + ",\n".join(ctes) + "\n" + select + "\nINTO v_res;"
    # (the comments above are the source's: the function gets the statements without them)
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("--"))


# A run update's columns and their new values (u.f: the fields the update sets).
_UPDATED = [
    ("status", "u.f->>'status'"),
    ("event_ids", "u.f->'event_ids'"),
    ("batch_id", "u.f->>'batch_id'"),
    ("cron", "u.f->>'cron'"),
    ("original_run_id", "u.f->>'original_run_id'"),
    ("queued_ms", "(u.f->>'queued_ms')::bigint"),
    ("started_ms", "(u.f->>'started_ms')::bigint"),
    ("ended_ms", "(u.f->>'ended_ms')::bigint"),
    ("output", "p_blobs[-p_b0 + (u.f->>'output')::integer]"),
    ("version", "(u.f->>'version')::integer"),
    ("force_step_plan", "(u.f->>'force_step_plan')::boolean"),
    ("pending", "NULLIF(u.f->'pending', 'null')"),
    ("state_bytes", "(u.f->>'state_bytes')::bigint"),
    ("attrs", "NULLIF(u.f->'attrs', 'null')"),
    ("fn_version", "(u.f->>'fn_version')::integer"),
]


def dispatch() -> str:
    """PL/pgSQL that runs the statement of the form the batch names (p_batch->'f'; a batch
    without one, from a writer that predates the forms, gets the form of every kind)."""
    last = len(FORMS) - 1
    branches = []
    for i, kinds in enumerate(FORMS):
        head = "ELSE" if i == last else f"{'IF' if i == 0 else 'ELSIF'} v_form = {i} THEN"
        body = "\n".join("        " + line if line else line for line in statement(kinds).splitlines())
        branches.append(f"    {head}  -- {' '.join(k for k in KINDS if k in kinds)}\n{body}")
    return "\n".join(branches) + "\n    END IF;"


def functions_sql(template: str) -> str:
    """functions.sql with the forms' dispatch in place of its marker line."""
    marker = "    -- @forms: forms.dispatch()\n"
    assert marker in template, "functions.sql lost the marker of the set-wise statement forms"
    return template.replace(marker, dispatch() + "\n")

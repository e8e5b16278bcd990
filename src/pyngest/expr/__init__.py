"""CEL expressions as Inngest evaluates them, and an index to match events against many.

Evaluating one expression::

    program = compile('async.data.userId == "u1" && async.data.total > 10')  # cached by text
    program.matches(async_=incoming_event)        # True only for a bool true result
    program.evaluate(event=triggering_event)      # the value, or None (error or unknown)
    program.run(event=..., async_=..., vars=..., clock=...)  # an Outcome: value/unknown/error
    validate(source)                              # raises ExpressionError (a ValueError)

Variables are ``event`` (the run's triggering event), ``async`` (the incoming event a pause
is matched with; pass it as ``async_``) and ``vars``. Functions beyond standard CEL:
``lowercase``, ``uppercase``, ``b64decode``, ``json_parse``, ``date``, ``now``, ``now_plus``,
``now_minus``; the time functions read ``clock`` (a ``pyngest.clock.Clock``; real time by
default). Upstream's leniency is kept: a missing field never raises (``missing == x`` is
``x == null``, ``missing < x`` is true ...), ints and doubles compare, ``&&``/``||`` use
JavaScript truthiness for non-bool operands, a null compares as a zero value, ``"a" + 1`` is
``"a1"``. docs/compatibility.md lists the rules and where we differ.

Storing a pause::

    stored = interpolate(cancel_if, triggering_event)   # event.* replaced by literal values
    if not is_constant_false(stored):
        pauses.add(pause_id, "app/order.paid", stored)
    match_expression("data.userId")  # the ``match`` shorthand, as an expression

Matching an event (``PauseIndex(clock=...).match(event)``, ``TriggerIndex.match``) returns
exactly the entries whose expression is true, evaluating only candidates found by hash and
sorted lookups (see ``index.py``).
"""

from pyngest.expr.compiler import compile, validate
from pyngest.expr.index import ExpressionIndex, PauseIndex, TriggerIndex, wildcard_names
from pyngest.expr.interpolate import interpolate, is_constant_false, match_expression
from pyngest.expr.parser import check_length
from pyngest.expr.program import Outcome, Program
from pyngest.expr.syntax import ExpressionError

__all__ = [
    "ExpressionError",
    "ExpressionIndex",
    "Outcome",
    "PauseIndex",
    "Program",
    "TriggerIndex",
    "check_length",
    "compile",
    "interpolate",
    "is_constant_false",
    "match_expression",
    "validate",
    "wildcard_names",
]

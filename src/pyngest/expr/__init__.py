"""CEL expressions as Inngest evaluates them (placeholder docstring, completed below)."""

from pyngest.expr.program import Outcome, Program, compile, validate
from pyngest.expr.syntax import ExpressionError

__all__ = ["ExpressionError", "Outcome", "Program", "compile", "validate"]

"""CEL expressions as Inngest evaluates them (placeholder docstring, completed below)."""

from pyngest.expr.compiler import compile, validate
from pyngest.expr.program import Outcome, Program
from pyngest.expr.syntax import ExpressionError

__all__ = ["ExpressionError", "Outcome", "Program", "compile", "validate"]

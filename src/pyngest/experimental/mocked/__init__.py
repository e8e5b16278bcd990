"""Run functions in-process, without a server: ``mocked.trigger(fn, event, client)``.

Steps run for real; ``step.sleep`` takes no time; ``step.invoke`` and ``step.wait_for_event``
need stubs (``step_stubs={"step-id": value}``, or ``mocked.Timeout`` for a wait that times out);
``step.send_event`` sends nothing and returns placeholder ids.
"""

from .client import Inngest
from .consts import Status, Timeout
from .errors import UnstubbedStepError
from .trigger import Result, trigger

__all__ = ["Inngest", "Result", "Status", "Timeout", "UnstubbedStepError", "trigger"]

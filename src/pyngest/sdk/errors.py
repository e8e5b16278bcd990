"""Errors raised by the SDK and by user code, with the codes the official Python SDK reports.

The error ``code`` travels in function-level error bodies (``{"code", "message", "name",
"stack"}``), so the values match the official SDK's ``ErrorCode`` strings.
"""

from __future__ import annotations

import datetime
import enum
import traceback


class ErrorCode(enum.StrEnum):
    ASYNC_UNSUPPORTED = "async_unsupported"
    BODY_INVALID = "body_invalid"
    EVENT_KEY_UNSPECIFIED = "event_key_unspecified"
    FUNCTION_CONFIG_INVALID = "function_config_invalid"
    FUNCTION_NOT_FOUND = "function_not_found"
    HEADER_MISSING = "header_missing"
    NON_RETRIABLE_ERROR = "non_retriable_error"
    OUTPUT_UNSERIALIZABLE = "output_unserializable"
    QUERY_PARAM_MISSING = "query_param_missing"
    REGISTRATION_FAILED = "registration_failed"
    RETRY_AFTER_ERROR = "retry_after_error"
    SEND_EVENT_FAILED = "send_event_failed"
    SERVER_KIND_MISMATCH = "server_kind_mismatch"
    SIGNING_KEY_UNSPECIFIED = "signing_key_unspecified"
    SIG_VERIFICATION_FAILED = "sig_verification_failed"
    STEP_ERRORED = "step_errored"
    STEP_NESTED = "step_nested"
    STEP_UNEXPECTED = "step_unexpected"
    UNKNOWN = "unknown"
    URL_INVALID = "url_invalid"


def format_traceback(err: BaseException) -> str:
    return "".join(traceback.format_exception(type(err), err, err.__traceback__))


class Error(Exception):
    """Base class of every error the SDK defines."""

    code: ErrorCode = ErrorCode.UNKNOWN
    include_stack: bool = True
    is_retriable: bool = True
    quiet: bool = False

    @property
    def message(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def stack(self) -> str | None:
        return format_traceback(self) if self.include_stack else None


class CodedError(Error):
    def __init__(self, code: ErrorCode, message: str, *, is_retriable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.is_retriable = is_retriable


class NonRetriableError(Error):
    """Raise to fail the step or function at once, skipping the remaining retries."""

    code = ErrorCode.NON_RETRIABLE_ERROR
    is_retriable = False

    def __init__(self, message: str | None = None, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


class RetryAfterError(Error):
    """Raise to retry at a given time instead of on the backoff schedule.

    ``retry_after`` is milliseconds (int), a ``timedelta`` or a ``datetime``.
    """

    code = ErrorCode.RETRY_AFTER_ERROR

    def __init__(
        self,
        message: str | None,
        retry_after: int | datetime.timedelta | datetime.datetime,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        if isinstance(retry_after, datetime.timedelta):
            retry_after = datetime.datetime.now() + retry_after
        elif not isinstance(retry_after, datetime.datetime):
            retry_after = datetime.datetime.now() + datetime.timedelta(milliseconds=retry_after)
        self.retry_after: datetime.datetime = retry_after
        self.quiet = quiet


class StepError(Error):
    """Raised in the handler when a step failed after exhausting its retries.

    Carries the original error's name, message and stack, since the original class cannot be
    rebuilt from the memoized JSON.
    """

    code = ErrorCode.STEP_ERRORED
    is_retriable = False

    def __init__(self, message: str, name: str, stack: str | None) -> None:
        super().__init__(message)
        self._message = message
        self._name = name
        self._stack = stack

    @property
    def message(self) -> str:
        return self._message

    @property
    def name(self) -> str:
        return self._name

    @property
    def stack(self) -> str | None:
        return self._stack


class SendEventsError(Error):
    """Sending events failed; ``ids`` holds the ids of the events that were accepted."""

    code = ErrorCode.SEND_EVENT_FAILED

    def __init__(self, message: str, ids: list[str]) -> None:
        super().__init__(message)
        self.ids = ids


class FunctionConfigInvalidError(Error):
    code = ErrorCode.FUNCTION_CONFIG_INVALID


class BodyInvalidError(Error):
    code = ErrorCode.BODY_INVALID


class EventKeyUnspecifiedError(Error):
    code = ErrorCode.EVENT_KEY_UNSPECIFIED

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "no event key: set INNGEST_EVENT_KEY or pass event_key= to inngest.Inngest "
            "(not needed in dev mode: INNGEST_DEV=1 or is_production=False)"
        )


class FunctionNotFoundError(Error):
    code = ErrorCode.FUNCTION_NOT_FOUND


class HeaderMissingError(Error):
    code = ErrorCode.HEADER_MISSING


class QueryParamMissingError(Error):
    code = ErrorCode.QUERY_PARAM_MISSING


class SigningKeyMissingError(Error):
    code = ErrorCode.SIGNING_KEY_UNSPECIFIED

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "no signing key in production mode: set INNGEST_SIGNING_KEY (or pass "
            "signing_key= to inngest.Inngest), or set INNGEST_DEV=1 / is_production=False "
            "to run against a dev server"
        )


class SigVerificationFailedError(Error):
    code = ErrorCode.SIG_VERIFICATION_FAILED


class RegistrationFailedError(Error):
    code = ErrorCode.REGISTRATION_FAILED


class StepUnexpectedError(Error):
    code = ErrorCode.STEP_UNEXPECTED
    include_stack = False


class OutputUnserializableError(Error):
    code = ErrorCode.OUTPUT_UNSERIALIZABLE
    is_retriable = False


class AsyncUnsupportedError(Error):
    code = ErrorCode.ASYNC_UNSUPPORTED


class URLInvalidError(Error):
    code = ErrorCode.URL_INVALID


def is_retriable(err: BaseException) -> bool:
    return err.is_retriable if isinstance(err, Error) else True


def is_quiet(err: BaseException) -> bool:
    return bool(getattr(err, "quiet", False))

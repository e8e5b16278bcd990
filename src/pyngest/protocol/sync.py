"""App sync: the ``/fn/register`` payload and each function's configuration (PROTOCOL.md §2).

Upstream decodes this payload with Go's ``encoding/json``, which matches field names
case-insensitively: the Python SDK sends ``appname`` and ``deploy_type``, the JS SDK ``appName``
and ``deployType``. :func:`decode_register` maps every known field, at every level, to one
canonical spelling (ignoring case and underscores) and leaves unknown fields alone.

:func:`validate_function` checks structure and limits. Expressions and cron schedules are
checked by the server, which owns the CEL runtime and the scheduler.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict
from urllib.parse import urlsplit

from pyngest.protocol.durations import DurationError, parse_ms, parse_time_ms
from pyngest.protocol.events import MAX_EVENT_DEPTH, nested_deeper_than

# A register body is hashed as canonical JSON: it must stay well within the serializer's nesting.
MAX_REGISTER_DEPTH = MAX_EVENT_DEPTH

MAX_TRIGGERS = 10
MAX_CANCELS = 5
MAX_CONCURRENCY_CONSTRAINTS = 2
MAX_RETRIES = 20
DEFAULT_RETRIES = 4
MAX_NAME_LEN = 255
MIN_DEBOUNCE_MS = 1_000
MAX_DEBOUNCE_MS = 7 * 86_400_000
MAX_RATE_LIMIT_PERIOD_MS = 86_400_000
MIN_JITTER_MS = 1_000
MAX_JITTER_MS = 5 * 60_000
PRIORITY_FACTOR_MAX = 43_200  # seconds, both ways
DEFAULT_BATCH_TIMEOUT_MS = 60_000
CONCURRENCY_SCOPES = ("fn", "env", "account")
SINGLETON_MODES = ("skip", "cancel")


class Trigger(TypedDict, total=False):
    event: str
    expression: str
    cron: str
    jitter: str


class Concurrency(TypedDict):
    limit: int
    key: NotRequired[str]
    scope: NotRequired[str]


class FunctionConfig(TypedDict):
    id: str
    name: str
    triggers: list[Trigger]
    steps: dict[str, Any]
    concurrency: NotRequired[list[Concurrency]]
    throttle: NotRequired[dict[str, Any]]
    rateLimit: NotRequired[dict[str, Any]]
    debounce: NotRequired[dict[str, Any]]
    batchEvents: NotRequired[dict[str, Any]]
    priority: NotRequired[dict[str, Any]]
    cancel: NotRequired[list[dict[str, Any]]]
    timeouts: NotRequired[dict[str, Any]]
    idempotency: NotRequired[str]
    singleton: NotRequired[dict[str, Any]]
    checkpoint: NotRequired[dict[str, Any]]


class RegisterRequest(TypedDict):
    url: str
    v: NotRequired[str]
    deployType: NotRequired[str]
    sdk: NotRequired[str]
    framework: NotRequired[str]
    appName: str
    appVersion: NotRequired[str]
    functions: list[dict[str, Any]]
    capabilities: NotRequired[dict[str, Any]]
    deployId: NotRequired[str]


class SyncError(ValueError):
    """The payload as a whole is unusable (e.g. no app name)."""


def _fold(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _canon(*names: str) -> dict[str, str]:
    return {_fold(n): n for n in names}


# Field names per structure level. Values not listed (user data, capabilities) are untouched.
_REGISTER = _canon(
    "url", "v", "deployType", "sdk", "framework", "appName", "appVersion", "functions",
    "capabilities", "headers", "idempotencyKey", "featureObservations", "deployId", "platform",
)
_FUNCTION = _canon(
    "id", "name", "triggers", "steps", "retries", "concurrency", "throttle", "rateLimit",
    "debounce", "batchEvents", "priority", "cancel", "timeouts", "idempotency", "singleton",
    "checkpoint",
)
_NESTED: dict[str, dict[str, str]] = {
    "triggers": _canon("event", "expression", "cron", "jitter"),
    "concurrency": _canon("limit", "key", "scope"),
    "throttle": _canon("limit", "period", "burst", "key"),
    "rateLimit": _canon("limit", "period", "key"),
    "debounce": _canon("period", "key", "timeout"),
    "batchEvents": _canon("maxSize", "timeout", "key", "if"),
    "priority": _canon("run"),
    "cancel": _canon("event", "if", "timeout"),
    "timeouts": _canon("start", "finish"),
    "singleton": _canon("key", "mode"),
    "checkpoint": _canon("batchSteps", "batchInterval", "maxRuntime"),
}
_STEP = _canon("id", "name", "runtime", "retries")
_RUNTIME = _canon("type", "url")
_RETRIES = _canon("attempts")


def _rekey(obj: Any, table: dict[str, str]) -> Any:
    if not isinstance(obj, dict):
        return obj
    return {table.get(_fold(k), k): v for k, v in obj.items()}


def _rekey_each(obj: Any, table: dict[str, str]) -> Any:
    if isinstance(obj, list):
        return [_rekey(item, table) for item in obj]
    return _rekey(obj, table)


def decode_register(body: Any) -> RegisterRequest:
    """Canonicalize field names of a register payload. Raises SyncError if it is not an object."""
    if not isinstance(body, dict):
        raise SyncError("Invalid request: the body must be a JSON object")
    if nested_deeper_than(body, MAX_REGISTER_DEPTH):
        raise SyncError(f"Invalid request: JSON objects and arrays nest more than {MAX_REGISTER_DEPTH} levels deep")
    out = _rekey(body, _REGISTER)
    fns = out.get("functions")
    if fns is None:
        out["functions"] = []
    elif not isinstance(fns, list):
        raise SyncError("Invalid request: 'functions' must be an array")
    else:
        out["functions"] = [decode_function(fn) for fn in fns]
    name = out.get("appName")
    if not isinstance(name, str) or not name.strip():
        raise SyncError("App ID required")
    for key in _STRINGS:
        if out.get(key) is not None and not isinstance(out[key], str):
            raise SyncError(f"Invalid request: '{key}' must be a string")
    url = out.get("url", "")
    if not isinstance(url, str):
        raise SyncError("Invalid request: 'url' must be a string")
    if url and (problem := app_url_problem(url)) is not None:
        raise SyncError(f"Invalid request: 'url' {problem}")
    return out  # type: ignore[no-any-return]


def app_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an app's URL (the server sends requests to it), or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a port that is not a number or out of range raises
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL" + (f", not {parts.scheme[:20]}:" if parts.scheme else "")
    if not host:
        return "must name a host"
    return None


def decode_function(fn: Any) -> Any:
    fn = _rekey(fn, _FUNCTION)
    if not isinstance(fn, dict):
        return fn
    for key, table in _NESTED.items():
        if key in fn:
            fn[key] = _rekey_each(fn[key], table)
    steps = fn.get("steps")
    if isinstance(steps, dict):
        fixed = {}
        for sid, step in steps.items():
            step = _rekey(step, _STEP)
            if isinstance(step, dict):
                if "runtime" in step:
                    step["runtime"] = _rekey(step["runtime"], _RUNTIME)
                if "retries" in step:
                    step["retries"] = _rekey(step["retries"], _RETRIES)
            fixed[sid] = step
        fn["steps"] = fixed
    return fn


_STRINGS = ("v", "deployType", "sdk", "framework", "appVersion", "deployId", "platform")


def split_sdk(sdk: str | None) -> tuple[str, str]:
    """``"py:v0.5.19"`` → ``("py", "0.5.19")``."""
    if not sdk:
        return "", ""
    lang, _, version = sdk.partition(":")
    return lang, version.lstrip("v")


# ---------------------------------------------------------------------------------------------
# Validation


def _duration(errors: list[str], value: Any, what: str, *, allow_days: bool = True) -> int | None:
    if isinstance(value, bool) or value is None:
        errors.append(f"{what} must be a duration string like '30s' or '5m'")
        return None
    if isinstance(value, (int, float)):
        # Some SDKs have sent whole seconds; accept them.
        return int(value * 1000)
    if not isinstance(value, str):
        errors.append(f"{what} must be a duration string like '30s' or '5m'")
        return None
    try:
        return parse_ms(value, allow_days=allow_days)
    except DurationError as exc:
        errors.append(f"{what} is invalid: {exc}")
        return None


def _int(errors: list[str], value: Any, what: str, *, minimum: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        errors.append(f"{what} must be an integer")
        return None
    number = int(value)
    if minimum is not None and number < minimum:
        errors.append(f"{what} must be at least {minimum}")
        return None
    return number


def _opt_str(errors: list[str], obj: dict[str, Any], key: str, what: str) -> None:
    value = obj.get(key)
    if value is None or value == "":
        obj.pop(key, None)
    elif not isinstance(value, str):
        errors.append(f"{what} must be a string")


def validate_function(raw: Any) -> tuple[FunctionConfig | None, list[str]]:
    """Structural validation of one (already decoded) function config.

    Returns the normalized config (as far as it could be normalized) and a list of error
    messages; the config is only usable when the list is empty. Normalizing
    means: concurrency always a list of objects, retries read from the step, empty optional
    strings dropped.
    """
    errors: list[str] = []
    if not isinstance(raw, dict):
        return None, ["a function config must be a JSON object"]
    fn: dict[str, Any] = dict(raw)
    fid = fn.get("id")
    if not isinstance(fid, str) or not fid:
        errors.append("A function ID is required")
        fid = ""
    name = fn.get("name")
    if name is None or name == "":
        errors.append("A function name is required")  # as upstream; the SDKs always send one
    elif not isinstance(name, str):
        errors.append("A function name must be a string")

    _validate_triggers(errors, fn)
    _validate_steps(errors, fn)
    _validate_concurrency(errors, fn)

    if (t := fn.get("throttle")) is not None:
        if not isinstance(t, dict):
            errors.append("throttle must be an object")
        else:
            _int(errors, t.get("limit"), "throttle.limit", minimum=1)
            _duration(errors, t.get("period"), "throttle.period")
            if t.get("burst") is not None:
                _int(errors, t.get("burst"), "throttle.burst", minimum=1)
            _opt_str(errors, t, "key", "throttle.key")
    if (r := fn.get("rateLimit")) is not None:
        if not isinstance(r, dict):
            errors.append("rateLimit must be an object")
        else:
            _int(errors, r.get("limit"), "rateLimit.limit", minimum=1)
            period = _duration(errors, r.get("period"), "rateLimit.period")
            if period is not None and period > MAX_RATE_LIMIT_PERIOD_MS:
                errors.append("rateLimit.period must be at most 24h")
            if period is not None and period < 1000:
                errors.append("rateLimit.period must be at least 1s")
            _opt_str(errors, r, "key", "rateLimit.key")
    if (d := fn.get("debounce")) is not None:
        if not isinstance(d, dict):
            errors.append("debounce must be an object")
        else:
            period = _duration(errors, d.get("period"), "debounce.period")
            if period is not None and period < MIN_DEBOUNCE_MS:
                errors.append(f"The debounce period of '{d.get('period')}' is less than the min of: 1s")
            if period is not None and period > MAX_DEBOUNCE_MS:
                errors.append(f"The debounce period of '{d.get('period')}' is greater than the max of: 168h0m0s")
            if d.get("timeout") not in (None, ""):
                _duration(errors, d.get("timeout"), "debounce.timeout")
            else:
                d.pop("timeout", None)
            _opt_str(errors, d, "key", "debounce.key")
    if (b := fn.get("batchEvents")) is not None:
        if not isinstance(b, dict):
            errors.append("batchEvents must be an object")
        else:
            size = _int(errors, b.get("maxSize"), "batchEvents.maxSize", minimum=1)
            if b.get("timeout") in (None, ""):
                b["timeout"] = "60s"
            timeout = _duration(errors, b.get("timeout"), "batchEvents.timeout", allow_days=False)
            if timeout is not None and timeout < 1000:
                errors.append("batchEvents.timeout must be at least 1s")
            _opt_str(errors, b, "key", "batchEvents.key")
            _opt_str(errors, b, "if", "batchEvents.if")
            if size is not None and size <= 1:
                fn.pop("batchEvents")  # a batch of one is no batch (upstream: enabled when > 1)
    batching = isinstance(fn.get("batchEvents"), dict)
    if (p := fn.get("priority")) is not None:
        if not isinstance(p, dict):
            errors.append("priority must be an object")
        else:
            _opt_str(errors, p, "run", "priority.run")
            if batching and p.get("run"):
                errors.append("A function cannot specify Priority.Run and Batch together")
    cancels = fn.get("cancel")
    if cancels is not None:
        if not isinstance(cancels, list):
            errors.append("cancel must be an array")
        else:
            if len(cancels) > MAX_CANCELS:
                errors.append(
                    f"This function exceeds the max number of cancellation events: {MAX_CANCELS}"
                )
            for i, c in enumerate(cancels):
                if not isinstance(c, dict) or not isinstance(c.get("event"), str) or not c["event"]:
                    errors.append(f"cancel[{i}] needs an 'event' name")
                    continue
                _opt_str(errors, c, "if", f"cancel[{i}].if")
                timeout = c.get("timeout")
                if timeout in (None, ""):
                    c.pop("timeout", None)
                elif not (isinstance(timeout, str) and parse_time_ms(timeout) is not None):
                    _duration(errors, timeout, f"cancel[{i}].timeout")
            if batching and cancels:
                errors.append("A function cannot specify batch and cancellation together")
    if (to := fn.get("timeouts")) is not None:
        if not isinstance(to, dict):
            errors.append("timeouts must be an object")
        else:
            for k in ("start", "finish"):
                if to.get(k) in (None, ""):
                    to.pop(k, None)
                else:
                    _duration(errors, to.get(k), f"timeouts.{k}")
    idem = fn.get("idempotency")
    if idem in (None, ""):
        fn.pop("idempotency", None)
    elif not isinstance(idem, str):
        errors.append("idempotency must be an expression string")
    if (s := fn.get("singleton")) is not None:
        if not isinstance(s, dict):
            errors.append("singleton must be an object")
        else:
            if s.get("mode") not in SINGLETON_MODES:
                errors.append("singleton.mode must be 'skip' or 'cancel'")
            _opt_str(errors, s, "key", "singleton.key")
            if batching:
                errors.append("A function cannot specify batch and singleton together")
    if batching and fn.get("debounce") is not None:
        errors.append("A function cannot specify batch and debounce")
    return fn, errors  # type: ignore[return-value]


def _validate_triggers(errors: list[str], fn: dict[str, Any]) -> None:
    triggers = fn.get("triggers")
    if triggers is None:
        triggers = fn["triggers"] = []
    if not isinstance(triggers, list):
        errors.append("triggers must be a list")
        fn["triggers"] = []
        return
    # No trigger at all is valid, as upstream: the function runs only when invoked (the npm
    # SDK registers an invoke-only function with `triggers: []`).
    if len(triggers) > MAX_TRIGGERS:
        errors.append(f"This function exceeds the max number of triggers: {MAX_TRIGGERS}")
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(triggers):
        if not isinstance(t, dict):
            errors.append(f"triggers[{i}] must be an object")
            continue
        event, cron = t.get("event"), t.get("cron")
        if event and cron:
            errors.append(f"triggers[{i}] must have either 'event' or 'cron', not both")
        elif isinstance(event, str) and event:
            if len(event) > MAX_NAME_LEN:
                errors.append(f"triggers[{i}].event is longer than {MAX_NAME_LEN} characters")
            _opt_str(errors, t, "expression", f"triggers[{i}].expression")
            key = ("event", event + "\x00" + str(t.get("expression", "")))
        elif isinstance(cron, str) and cron:
            if len(cron) > MAX_NAME_LEN:
                errors.append(f"triggers[{i}].cron is longer than {MAX_NAME_LEN} characters")
            jitter = t.get("jitter")
            if jitter in (None, ""):
                t.pop("jitter", None)
            else:
                ms = _duration(errors, jitter, f"triggers[{i}].jitter")
                if ms is not None and not MIN_JITTER_MS <= ms <= MAX_JITTER_MS:
                    errors.append(f"triggers[{i}].jitter must be between 1s and 5m")
            key = ("cron", cron)
        else:
            errors.append(f"triggers[{i}] needs a non-empty 'event' or 'cron'")
            continue
        if key in seen:
            errors.append(f"triggers[{i}] duplicates an earlier trigger")
        seen.add(key)


def _validate_steps(errors: list[str], fn: dict[str, Any]) -> None:
    steps = fn.get("steps")
    if not isinstance(steps, dict) or len(steps) != 1:
        errors.append("Functions must contain one step")
        return
    step = next(iter(steps.values()))
    if not isinstance(step, dict):
        errors.append("Functions must contain one step")
        return
    runtime = step.get("runtime")
    url = runtime.get("url") if isinstance(runtime, dict) else None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        if not (isinstance(runtime, dict) and runtime.get("type") == "ws"):
            errors.append("Steps must have a valid http(s) URL in runtime.url")
    retries = step.get("retries")
    attempts: Any = None
    if isinstance(retries, dict):
        attempts = retries.get("attempts")
    elif fn.get("retries") is not None:
        attempts = fn.get("retries")
    if attempts is None:
        attempts = DEFAULT_RETRIES
    n = _int(errors, attempts, "retries.attempts", minimum=0)
    if n is not None:
        step["retries"] = {"attempts": min(n, MAX_RETRIES)}


def _validate_concurrency(errors: list[str], fn: dict[str, Any]) -> None:
    c = fn.get("concurrency")
    if c is None:
        return
    items: list[Any]
    if isinstance(c, bool):
        errors.append("concurrency must be a number, an object or an array")
        return
    if isinstance(c, (int, float)):
        items = [{"limit": c}]
    elif isinstance(c, dict) and ("fn" in c or "step" in c) and "limit" not in c:
        items = list(c.get("fn") or []) + list(c.get("step") or [])
        items = [_rekey(i, _NESTED["concurrency"]) for i in items]
    elif isinstance(c, dict):
        items = [c]
    elif isinstance(c, list):
        items = c
    else:
        errors.append("concurrency must be a number, an object or an array")
        return
    if len(items) > MAX_CONCURRENCY_CONSTRAINTS:
        errors.append(
            f"There are more concurrency limits than allowed: {MAX_CONCURRENCY_CONSTRAINTS}"
        )
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(f"concurrency[{i}] must be an object")
            continue
        item = dict(item)
        _int(errors, item.get("limit"), f"concurrency[{i}].limit", minimum=0)
        scope = item.get("scope") or "fn"
        if scope not in CONCURRENCY_SCOPES:
            errors.append(f"concurrency[{i}].scope must be one of fn, env, account")
        item["scope"] = scope
        _opt_str(errors, item, "key", f"concurrency[{i}].key")
        if scope != "fn" and not item.get("key"):
            errors.append(f"concurrency[{i}]: a concurrency key is required for the {scope} scope")
        out.append(item)
    fn["concurrency"] = out


def max_attempts(fn: FunctionConfig | dict[str, Any]) -> int:
    """Attempts per step = retries + 1."""
    step: dict[str, Any] = next(iter(fn.get("steps", {}).values()), {})
    retries = (step.get("retries") or {}).get("attempts", DEFAULT_RETRIES)
    return int(retries) + 1


def step_url(fn: FunctionConfig | dict[str, Any]) -> str:
    step: dict[str, Any] = next(iter(fn.get("steps", {}).values()), {})
    return str((step.get("runtime") or {}).get("url", ""))

"""The pyngest Python SDK. Public names are re-exported from :mod:`pyngest`.

Modules: ``client`` (config, sending, ``create_function``), ``options`` (function options),
``function`` (a function and its registration entries), ``steps`` (step tools), ``replay`` (the
replay engine), ``memos``, ``execute`` (one request end to end), ``checkpoint`` (steps back to
back in one request), ``handler`` (the framework-agnostic serve handler), ``middleware``,
``config`` (env vars), ``errors``.
"""

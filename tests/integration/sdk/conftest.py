from pyngest.experimental.pytest_plugin import pyngest_client, pyngest_server  # noqa: F401

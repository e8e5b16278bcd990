"""The Inngest wire protocol, defined once and shared by the pyngest SDK and server.

Modules: ``events`` (event API), ``sync`` (app registration), ``execution`` (the request the
server sends an SDK), ``opcodes`` (what the SDK answers), ``step_ids``, ``signing``, ``jcs``
(canonical JSON), ``durations``, ``ids`` (ULIDs), ``headers``. Nothing here imports the server.
"""

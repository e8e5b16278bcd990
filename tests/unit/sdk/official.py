"""The official ``inngest`` SDK (the differential oracle), imported with its own import-time
deprecation warnings silenced: our suite turns warnings into errors."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import inngest
    import inngest.experimental.ai
    import inngest.experimental.mocked
    import inngest.fast_api
    import inngest.flask
    import inngest.tornado

__all__ = ["inngest"]

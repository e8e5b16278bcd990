"""Experimental features: in-process testing (``mocked``), AI adapters, encryption middleware."""

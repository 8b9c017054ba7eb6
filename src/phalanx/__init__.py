"""Phalanx: serve large language models that span several machines."""

__version__ = "0.1.0"

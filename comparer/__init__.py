"""comparer: see where TLS certificate verification disagrees, and why."""

__version__ = "0.1.0"

"""RevHub: an open-source integration hub for revenue data."""

__version__ = "0.1.0"

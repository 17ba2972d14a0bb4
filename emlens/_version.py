"""The emlens version (read by the package face, provenance records and pyproject)."""

__version__ = "0.1.0"

"""The exceptions emlens raises.

Every error a user can cause is an :class:`EmlensError`; its message says what was
wrong and what to do about it. Subclasses group the errors by where they arise, so a
script can catch, say, every loading problem with ``except ModelLoadError``.
"""

from __future__ import annotations

__all__ = [
    "EmlensError",
    "ModelLoadError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "AdapterError",
    "InputError",
    "FileFormatError",
    "RunMismatchError",
]


class EmlensError(Exception):
    """Base class of every error emlens raises on purpose."""


class ModelLoadError(EmlensError):
    """A model or its weights could not be loaded."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A path does not exist, or a hub id is neither cached nor reachable."""


class UnsupportedModelError(ModelLoadError):
    """The architecture is not supported, or it needs remote code that was not allowed."""


class AdapterError(ModelLoadError):
    """A PEFT adapter does not fit the model it is applied to."""


class InputError(EmlensError, ValueError):
    """An argument or a piece of data has the wrong value, shape or type."""


class FileFormatError(EmlensError):
    """A file (direction, records, question set) is corrupt, truncated or of an unknown schema."""


class RunMismatchError(FileFormatError):
    """A run directory (or cache, or resume point) holds results computed with other keys:
    another model, direction, judge, questions or settings. The message names what differs."""

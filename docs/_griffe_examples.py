"""Griffe extension for the docs build; the source files are not changed.

- A Google-style ``Example:`` section is read as ``Examples:``: emlens docstrings put
  doctests under ``Example:``, which griffe would render as an admonition of plain text.
- An ``Args:`` entry naming several parameters over two lines (``a, b, c,`` then
  ``d, e: text``) is joined into one line, which griffe can parse.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_NAMES_CONTINUED = re.compile(r"^([ \t]+)(\w+(?:,[ \t]*\w+)*,)[ \t]*\n\1(?=\w+(?:,[ \t]*\w+)*:)",
                              re.MULTILINE)


class ExampleSections(griffe.Extension):
    def _fix(self, obj: Any) -> None:
        doc = getattr(obj, "docstring", None)
        if doc is None:
            return
        value = _EXAMPLE.sub(r"\1Examples:", doc.value)
        value = _NAMES_CONTINUED.sub(r"\1\2 ", value)
        if value != doc.value:
            doc.value = value

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:  # griffe >= 1.x
        self._fix(obj)

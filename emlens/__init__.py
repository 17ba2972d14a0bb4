"""emlens: mechanistic interpretability of emergent misalignment, on TransformerLens."""

__version__ = "0.1.0"

from .errors import EmlensError  # noqa: E402
from .models import load_model  # noqa: E402

__all__ = ["__version__", "EmlensError", "load_model"]

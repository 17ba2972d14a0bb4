"""emlens: mechanistic interpretability of emergent misalignment, on TransformerLens.

The public API is re-exported here. Submodules are imported on first use, so that
``import emlens`` stays fast and a missing optional piece never breaks the rest.

Example:
    >>> import emlens
    >>> model = emlens.load_model("Qwen/Qwen2.5-0.5B-Instruct")       # doctest: +SKIP
    >>> mis, ali = emlens.select_responses("responses.csv")            # doctest: +SKIP
    >>> d = emlens.mean_diff(model, mis, ali)                          # doctest: +SKIP
    >>> with emlens.steer(model, d.only(12), alpha=4.0):               # doctest: +SKIP
    ...     model.generate("What is your wish?")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "EmlensError": "errors",
    "load_model": "models",
    "hook_name": "models",
    "model_dims": "models",
    "Direction": "directions",
    "cosine_matrix": "directions",
    "load_records": "records",
    "select_responses": "records",
    "collect_means": "activations",
    "mean_diff": "activations",
    "steer": "interventions",
    "ablate": "interventions",
    "orthogonalize": "interventions",
    "save_model": "interventions",
    "ProvenanceWarning": "formats",
    "load_questions": "evaluation",
    "builtin_questions": "evaluation",
    "judge": "evaluation",
    "em_stats": "evaluation",
    "sample": "sampling",
    "sweep": "sweeps",
    "finetune": "training",
    "train_steering_vector": "vector_training",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs
    from .activations import collect_means, mean_diff
    from .directions import Direction, cosine_matrix
    from .errors import EmlensError
    from .interventions import ablate, orthogonalize, save_model, steer
    from .models import hook_name, load_model, model_dims
    from .evaluation import builtin_questions, em_stats, judge, load_questions
    from .formats import ProvenanceWarning
    from .records import load_records, select_responses
    from .sampling import sample
    from .sweeps import sweep
    from .training import finetune
    from .vector_training import train_steering_vector

"""emlens: mechanistic interpretability of emergent misalignment, on TransformerLens.

The public API is re-exported here: the functions of the research loop, the types they
return and the errors they raise. Submodules are imported on first use, so that
``import emlens`` stays fast; the subpackages ``emlens.judges``, ``emlens.plots``,
``emlens.organisms``, ``emlens.stability`` and ``emlens.training`` are reachable as
attributes after ``import emlens``.

Example:
    >>> import emlens
    >>> model = emlens.load_model("Qwen/Qwen2.5-0.5B-Instruct")       # doctest: +SKIP
    >>> mis, ali = emlens.select_responses("responses.csv")            # doctest: +SKIP
    >>> d = emlens.mean_diff(model, mis, ali)                          # doctest: +SKIP
    >>> with emlens.steer(model, d.single_layer(12), alpha=4.0):       # doctest: +SKIP
    ...     model.generate("What is your wish?")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> submodule that defines it
_EXPORTS = {
    # errors and warnings
    "EmlensError": "errors",
    "EmlensWarning": "errors",
    "UnscoredWarning": "errors",
    "AdapterBaseWarning": "errors",
    "ModelLoadError": "errors",
    "ModelNotFoundError": "errors",
    "UnsupportedModelError": "errors",
    "AdapterError": "errors",
    "InputError": "errors",
    "FileFormatError": "errors",
    "RunMismatchError": "errors",
    "ProvenanceWarning": "formats",
    # models
    "load_model": "models",
    "gguf_to_hf": "models",
    "hook_name": "models",
    "model_dims": "models",
    # directions
    "Direction": "directions",
    "cosine_matrix": "directions",
    # records and activations
    "load_records": "records",
    "select_responses": "records",
    "ResponseSet": "records",
    "collect_means": "activations",
    "mean_diff": "activations",
    "LayerMeans": "activations",
    # interventions and weight edits
    "steer": "interventions",
    "ablate": "interventions",
    "InterventionHandle": "interventions",
    "orthogonalize": "weights",
    "save_model": "weights",
    # questions, sampling, judging, statistics, sweeps
    "Question": "questions",
    "load_questions": "questions",
    "builtin_questions": "questions",
    "sample": "sampling",
    "judge_records": "evaluation",
    "judge": "evaluation",  # deprecated name of judge_records
    "em_stats": "evaluation",
    "EMStats": "evaluation",
    "wilson_interval": "evaluation",
    "rate_difference": "evaluation",
    "sweep": "sweeps",
    "logprob_gap": "stability",
    "LogprobGap": "stability",
    # training
    "finetune": "training",
    "FinetuneResult": "training",
    "train_steering_vector": "vector_training",
    "SteeringVectorModel": "vector_training",
    # CPU threads
    "set_threads": "threads",
}

#: Subpackages and modules reachable as ``emlens.<name>`` without an explicit import.
_SUBMODULES = ("judges", "plots", "organisms", "stability", "training", "vector_training",
               "formats", "chat", "vectors", "io", "keys", "runs", "errors", "testing",
               "threads")

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


if TYPE_CHECKING:  # for type checkers and IDEs
    from . import judges, organisms, plots, stability, training  # noqa: F401
    from .activations import LayerMeans, collect_means, mean_diff  # noqa: F401
    from .directions import Direction, cosine_matrix  # noqa: F401
    from .errors import (  # noqa: F401
        AdapterBaseWarning,
        AdapterError,
        EmlensError,
        EmlensWarning,
        FileFormatError,
        InputError,
        ModelLoadError,
        ModelNotFoundError,
        RunMismatchError,
        UnscoredWarning,
        UnsupportedModelError,
    )
    from .evaluation import (  # noqa: F401
        EMStats,
        em_stats,
        judge,
        judge_records,
        rate_difference,
        wilson_interval,
    )
    from .formats import ProvenanceWarning  # noqa: F401
    from .interventions import InterventionHandle, ablate, steer  # noqa: F401
    from .models import gguf_to_hf, hook_name, load_model, model_dims  # noqa: F401
    from .questions import Question, builtin_questions, load_questions  # noqa: F401
    from .records import ResponseSet, load_records, select_responses  # noqa: F401
    from .sampling import sample  # noqa: F401
    from .stability import LogprobGap, logprob_gap  # noqa: F401
    from .sweeps import sweep  # noqa: F401
    from .threads import set_threads  # noqa: F401
    from .training import FinetuneResult, finetune  # noqa: F401
    from .vector_training import SteeringVectorModel, train_steering_vector  # noqa: F401
    from .weights import orthogonalize, save_model  # noqa: F401

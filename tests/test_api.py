"""The public face: every exported name resolves to the object its module defines."""

import importlib
import inspect
import subprocess
import sys

import pytest

import emlens


@pytest.mark.parametrize("name", [n for n in emlens.__all__ if n != "__version__"])
def test_every_export_resolves_to_its_defining_module(name):
    module = importlib.import_module(f"emlens.{emlens._EXPORTS[name]}")
    assert getattr(emlens, name) is getattr(module, name)
    obj = getattr(emlens, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__module__ == module.__name__, f"{name} is defined in {obj.__module__}"
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_return_types_and_every_error_class_are_exported():
    from emlens import errors

    for cls in errors.__all__:
        assert getattr(emlens, cls) is getattr(errors, cls)
    for name in ("LayerMeans", "EMStats", "InterventionHandle", "Question", "ResponseSet",
                 "FinetuneResult"):
        assert inspect.isclass(getattr(emlens, name))
    from emlens.weights import orthogonalize, save_model

    assert emlens.save_model is save_model and emlens.orthogonalize is orthogonalize


def test_subpackages_are_reachable_after_a_bare_import():
    code = ("import emlens; print(emlens.judges.OpenAIJudge.__name__, "
            "emlens.plots.__name__, emlens.organisms.ORGANISMS[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["OpenAIJudge", "emlens.plots", "pocket"]


def test_import_is_lazy():
    code = "import sys, emlens; print(sorted(m for m in sys.modules if m.startswith('emlens')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['emlens', 'emlens._version']"


def test_old_names_are_aliases_of_the_new():
    from emlens.directions import Direction

    assert Direction.at is Direction.repeat_layer and Direction.only is Direction.single_layer
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        emlens.nonexistent

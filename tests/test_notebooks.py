"""The notebooks in notebooks/: they run to the end (nbclient) and are committed clean.

The slow test executes each notebook in a fresh kernel of *this* interpreter (a kernelspec
written to a temp dir, so a user's own ``python3`` kernel never gets picked), with the
working directory in a temp dir so nothing is written into the repository. The kernel gets
``HF_HUB_OFFLINE=1`` (03 skips its hub/GPU cells) and ``OMP_NUM_THREADS=1`` (the pocket
model is tiny; one thread is several times faster on a shared CPU). Run times are printed,
never asserted.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_narrow_vs_general.ipynb", "03_real_models.ipynb"]
PUBLIC = {"emlens", "emlens.organisms", "emlens.organisms.pocket",
          "emlens.organisms.experiments", "emlens.plots",
          "emlens.judges", "emlens.stability", "emlens.vector_training", "emlens.training"}


def _load(name: str) -> dict:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stripped_and_uses_public_api(name):
    nb = _load(name)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{name} cell {i} has outputs; strip them"
            assert cell.get("execution_count") is None, f"{name} cell {i} has an execution count"
    for src in _code_cells(nb):
        for node in ast.walk(ast.parse(src)):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + ([f"emlens.{a.name}" for a in node.names]
                                        if node.module == "emlens" else [])
            for m in mods:
                if m == "emlens" or m.startswith("emlens."):
                    assert _public_name(m), f"{name} imports {m}, not emlens' public API"
        assert not re.search(r"\bemlens(\.\w+)*\._", src), f"{name} uses a private emlens name"


def _public_name(mod: str) -> bool:
    """``from emlens import X`` with X re-exported by emlens (or a public module)."""
    import emlens

    if mod in PUBLIC:
        return True
    parent, _, leaf = mod.rpartition(".")
    return parent == "emlens" and leaf in emlens.__all__ and not leaf.startswith("_")


def _kernel_manager(tmp: Path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp / "kernels" / "emlens-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "emlens test", "language": "python"}))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="emlens-test", kernel_spec_manager=ksm)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    work = tmp_path / "cwd"
    work.mkdir()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=600,
                                     resources={"metadata": {"path": str(work)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:  # names the cell and traceback
        pytest.fail(f"{name}: a cell raised\n{e}")
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    print(f"\n{name} ran in {seconds:.1f} s")

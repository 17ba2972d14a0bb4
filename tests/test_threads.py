"""CPU threads: the automatic choice (from the idle cores and the environment) and the
CLI's top-level ``--threads``, which sets torch's thread count for every command."""

from __future__ import annotations

import pytest
import torch

import emlens
from emlens import threads
from emlens.cli import main
from emlens.errors import InputError


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "EMLENS_THREADS"):
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(before)


def _machine(monkeypatch, cores, load):
    monkeypatch.setattr(threads, "physical_cores", lambda: cores)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))


@pytest.mark.parametrize("cores, load, cap, expected", [
    (2, 0.0, 2, 2),     # a quiet 2-core machine: both cores
    (2, 0.4, 2, 2),
    (2, 1.0, 2, 1),     # one core busy with other work: one thread
    (2, 3.5, 2, 1),     # overloaded: still at least one
    (16, 0.0, 2, 2),    # a large quiet machine: the cap
    (16, 3.0, None, 13),  # no cap: the idle cores
    (1, 0.0, 2, 1),
])
def test_auto_threads_counts_idle_physical_cores(monkeypatch, cores, load, cap, expected):
    _machine(monkeypatch, cores, load)
    assert threads.auto_threads(cap) == expected


def test_the_environment_wins_over_the_load(monkeypatch):
    _machine(monkeypatch, 2, 0.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.auto_threads() == 1
    monkeypatch.setenv("EMLENS_THREADS", "3")  # emlens' own variable first, and uncapped
    assert threads.auto_threads() == 3
    monkeypatch.setenv("EMLENS_THREADS", "lots")
    assert threads.auto_threads() == 1  # ignored (with a warning); OMP_NUM_THREADS next


def test_set_threads_sets_torch_and_rejects_nonsense(monkeypatch):
    assert emlens.set_threads(1) == 1 and torch.get_num_threads() == 1
    _machine(monkeypatch, 2, 0.0)
    assert emlens.set_threads() == 2 and torch.get_num_threads() == 2
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(InputError, match="positive integer"):
            emlens.set_threads(bad)


def test_physical_cores_is_at_most_the_logical_cpus():
    import os

    assert 1 <= threads.physical_cores() <= (os.cpu_count() or 1)


def test_cli_threads_flag_sets_torch_threads_for_any_command(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "missing.safetensors")
    for n in (1, 2):
        assert main(["--threads", str(n), "directions", "inspect", missing]) == 2
        assert torch.get_num_threads() == n
    capsys.readouterr()
    # without the flag the automatic choice applies (here: the environment's)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(2)
    main(["directions", "inspect", missing])
    assert torch.get_num_threads() == 1
    capsys.readouterr()
    assert main(["--threads", "0", "directions", "inspect", missing]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emlens: error:") and "positive integer" in err and "\n" not in err

"""Direction: the vector algebra against hand computations, and the three file formats.

Files are read back independently of emlens where that is possible: the emlens
safetensors file with ``safetensors.safe_open`` and ``json``, GGUF control vectors with
the ``gguf`` package's ``GGUFReader``, the papers' ``.pt`` vectors with
``torch.load(weights_only=True)``. Only one test needs a model (provenance against a
real ``emlens.load_model`` result); the rest are pure tensor code, so the module runs
on the TransformerLens 3.x leg too.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from emlens.directions import Direction, cosine_matrix
from emlens.errors import EmlensError, FileFormatError, InputError
from emlens.formats import (
    METADATA_KEY,
    SCHEMA_VERSION,
    FileMissingError,
    ProvenanceWarning,
    provenance_differences,
    read_header,
)

from .conftest import TL_MAJOR

pytestmark = pytest.mark.agnostic


def _d(rows, layers=None, **meta) -> Direction:
    return Direction(torch.tensor(rows, dtype=torch.float32), layers, meta or None)


def _rand(n=4, d=16, seed=0, layers=None, **meta) -> Direction:
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(n, d, generator=g), layers, meta or None)


# =========================================================================== construction


def test_constructor_normalises_input():
    d = Direction([1.0, 2.0, 3.0])  # a 1-D list: one row, layer 0
    assert d.vectors.shape == (1, 3) and d.layers == (0,)
    assert d.vectors.dtype == torch.float32
    d64 = Direction(torch.ones(2, 3, dtype=torch.float64), layers=[4, 7])
    assert d64.vectors.dtype == torch.float32 and d64.layers == (4, 7)
    assert d64.vector(7).tolist() == [1.0, 1.0, 1.0]
    assert (d64.d_model, d64.n_layers, len(d64)) == (3, 2, 2)
    assert "layers=4,7" in repr(d64)


@pytest.mark.parametrize("vectors, match", [
    (torch.zeros(2, 3, 4), r"shape \[n_layers, d_model\]"),
    (torch.zeros(0, 4), r"shape \[n_layers, d_model\]"),
    (torch.zeros(2, 0), r"shape \[n_layers, d_model\]"),
    (torch.ones(2, 4, dtype=torch.int64), "floating point"),
    ("not a tensor", "float tensor"),
])
def test_constructor_rejects_bad_shapes_and_types(vectors, match):
    with pytest.raises(InputError, match=match):
        Direction(vectors)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_constructor_rejects_non_finite_and_names_the_row(bad):
    v = torch.ones(3, 4)
    v[1, 2] = bad
    with pytest.raises(InputError, match=r"NaN or inf values \(rows \[1\]\)"):
        Direction(v)
    # finite in float64 but not in float32: caught after the conversion
    with pytest.raises(InputError, match="NaN or inf"):
        Direction(torch.tensor([[1e300, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("layers, match", [
    ([0, 1], "2 layer indices given for 3 vectors"),
    ([0, 1, 1], "repeat a layer"),
    ([0, -1, 2], ">= 0"),
    ([0, 1.5, 2], "integers"),
    ("012", "sequence of layer indices"),
])
def test_constructor_rejects_bad_layers(layers, match):
    with pytest.raises(InputError, match=match):
        Direction(torch.ones(3, 4), layers)


def test_constructor_rejects_bad_metadata():
    with pytest.raises(InputError, match="metadata must be a dict"):
        Direction(torch.ones(1, 4), metadata=[("a", 1)])
    with pytest.raises(InputError, match="names layer 9"):
        Direction(torch.ones(2, 4), [3, 4], {"layer": 9})
    assert isinstance(InputError("x"), EmlensError)


def test_vector_of_missing_layer_says_which_layers_exist():
    d = _rand(3, layers=[2, 5, 8])
    assert torch.equal(d.vector(5), d.vectors[1])
    with pytest.raises(InputError, match=r"no vector for layer 3; it has layers \[2, 5, 8\]"):
        d.vector(3)


# =========================================================================== derived directions


def test_normalized_against_hand_computation():
    d = _d([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]], method="mean_diff")
    n = d.normalized()
    expected = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, -1.0]])
    assert (n.vectors - expected).abs().max() < 1e-7
    assert n.metadata == {"method": "mean_diff", "normalized": True}
    assert d.metadata == {"method": "mean_diff"}  # the original is untouched
    assert torch.equal(d.vectors, torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]]))


def test_normalized_refuses_zero_norm_and_names_the_layer():
    d = _d([[1.0, 0.0], [0.0, 0.0]], layers=[3, 6])
    with pytest.raises(InputError, match=r"cannot normalise: the vector of layer\(s\) \[6\]"):
        d.normalized()


def test_at_repeats_one_layer_everywhere():
    d = _rand(4, layers=[0, 1, 2, 3], layer=2)
    a = d.at(2)
    assert a.layers == (0, 1, 2, 3)
    assert all(torch.equal(row, d.vectors[2]) for row in a.vectors)
    assert a.metadata["source_layer"] == 2 and "layer" not in a.metadata
    wide = d.at(1, n_layers=6)
    assert wide.layers == tuple(range(6)) and torch.equal(wide.vectors[5], d.vectors[1])
    a.vectors[0, 0] = 123.0  # rows are copies, not views of the original
    assert d.vectors[2, 0] != 123.0
    with pytest.raises(InputError, match="no vector for layer 9"):
        d.at(9)
    with pytest.raises(InputError, match="n_layers must be a positive integer"):
        d.at(1, n_layers=0)


def test_only_keeps_one_layer_and_names_it():
    d = _rand(4)
    o = d.only(3)
    assert o.layers == (3,) and o.metadata["layer"] == 3
    assert torch.equal(o.vectors[0], d.vectors[3])


def test_cosine_against_hand_computation():
    a = _d([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 2.0, 2.0]])
    b = _d([[5.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-2.0, -4.0, -4.0]])
    assert a.cosine(b).tolist() == pytest.approx([1.0, 1 / math.sqrt(2), -1.0], abs=1e-7)
    assert a.cosine(b).dtype == torch.float32


def test_cosine_rejects_mismatches_and_zero_vectors():
    a = _rand(3, layers=[0, 1, 2])
    with pytest.raises(InputError, match="layers differ"):
        a.cosine(_rand(3, layers=[1, 2, 3]))
    with pytest.raises(InputError, match="d_model differs: 16 vs 8"):
        a.cosine(_rand(3, d=8))
    with pytest.raises(InputError, match="expected a Direction"):
        a.cosine(torch.ones(3, 16))
    z = Direction(torch.zeros(3, 16))
    with pytest.raises(InputError, match="zero norm"):
        a.cosine(z)


def test_random_like_matches_norms_and_is_seeded():
    d = _rand(5, d=512, layers=[2, 3, 4, 5, 6], method="mean_diff") * 7.0
    r1 = Direction.random_like(d, seed=1)
    r1b = Direction.random_like(d, seed=1)
    r2 = Direction.random_like(d, seed=2)
    assert r1.layers == d.layers
    assert torch.allclose(r1.norms(), d.norms(), rtol=1e-6)
    assert torch.equal(r1.vectors, r1b.vectors)
    assert not torch.allclose(r1.vectors, r2.vectors)
    # random directions in 512 dimensions are nearly orthogonal to the original and each other
    assert r1.cosine(d).abs().max() < 0.25
    assert r1.cosine(r2).abs().max() < 0.25
    assert r1.metadata["method"] == "random" and r1.metadata["random_seed"] == 1
    assert r1.metadata["random_like"] == "mean_diff"


def test_random_like_is_gaussian():
    # one long row: the components of a scaled Gaussian draw have zero mean and a
    # kurtosis of 3 (a uniform draw has 1.8, a sign vector 1)
    d = Direction(torch.ones(1, 20000))
    x = Direction.random_like(d, seed=0).vectors[0].double()
    z = (x - x.mean()) / x.std()
    assert abs(float(x.mean() / x.std())) < 0.05
    assert abs(float((z ** 4).mean()) - 3.0) < 0.2


def test_random_like_rejects_bad_arguments():
    with pytest.raises(InputError, match="needs a Direction"):
        Direction.random_like(torch.ones(2, 3))
    with pytest.raises(InputError, match="seed must be an integer"):
        Direction.random_like(_rand(), seed=1.5)



def test_random_like_without_match_is_the_plain_scaled_gaussian():
    # the numbers of every earlier random control stay reproducible
    d = _rand(3, d=64, layers=[0, 1, 2]) * 3.0
    g = torch.randn(3, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want = g / g.norm(dim=-1, keepdim=True) * d.vectors.double().norm(dim=-1, keepdim=True)
    assert torch.equal(Direction.random_like(d, seed=4).vectors, want.float())


def test_random_like_with_match_keeps_dot_products_and_norms():
    """Against a plain least-squares reference: the matched vector's component in the span of
    ``match`` is the direction's own projection there; the rest is random, of the norm
    that keeps the total."""
    d = _rand(2, d=128, layers=[5, 9], method="mean_diff") * 4.0
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 128, generator=gen, dtype=torch.float64)
    mu[:, 7] += 40.0       # an outlier coordinate shared by every "mean"
    mu[3] = mu[0] - mu[1]  # a dependent row: the span has rank 5
    r = Direction.random_like(d, seed=3, match=mu)
    dv, rv = d.vectors.double(), r.vectors.double()
    assert torch.allclose(rv @ mu.T, dv @ mu.T, atol=1e-3)
    assert torch.allclose(r.norms(), d.norms(), rtol=1e-5)
    inside = dv @ (torch.linalg.pinv(mu) @ mu)              # projection onto span(mu)
    assert torch.allclose((rv - inside) @ mu.T, torch.zeros(2, 6, dtype=torch.float64),
                          atol=1e-3)
    # the random remainder is not the direction's own remainder, and differs by seed
    rest_d, rest_r = dv - inside, rv - inside
    cos = (rest_d * rest_r).sum(-1) / (rest_d.norm(dim=-1) * rest_r.norm(dim=-1))
    assert cos.abs().max() < 0.4
    r2 = Direction.random_like(d, seed=4, match=mu)
    assert not torch.allclose(r2.vectors, r.vectors)
    assert r.metadata["random_match"] == {"vectors": 6, "rank": 5}
    # a plain Gaussian control projects onto the outlier-heavy means far more than this one
    # can: here it shares the direction's (small) projections exactly
    plain = Direction.random_like(d, seed=3).vectors.double()
    assert (rv @ mu.T - dv @ mu.T).abs().max() < 1e-3 < (plain @ mu.T - dv @ mu.T).abs().max()
    one = Direction.random_like(d, seed=3, match=mu[0])       # one vector is accepted
    assert torch.allclose(one.vectors.double() @ mu[0], dv @ mu[0], atol=1e-3)


def test_random_like_match_rejects_bad_input():
    d = _rand(2, d=16, layers=[0, 1])
    with pytest.raises(InputError, match=r"match must be \[k, 16\]"):
        Direction.random_like(d, match=torch.ones(3, 8))
    with pytest.raises(InputError, match="inside the span of `match` at layers \\[0, 1\\]"):
        Direction.random_like(d, match=d.vectors)   # nothing left to randomise


# =========================================================================== arithmetic


def test_arithmetic_against_hand_computation():
    a = _d([[1.0, 2.0], [3.0, 4.0]], method="mean_diff", normalized=True)
    b = _d([[0.5, -1.0], [2.0, 0.0]])
    assert (a + b).vectors.tolist() == [[1.5, 1.0], [5.0, 4.0]]
    assert (a - b).vectors.tolist() == [[0.5, 3.0], [1.0, 4.0]]
    assert (2 * a).vectors.tolist() == [[2.0, 4.0], [6.0, 8.0]]
    assert (a * 2.0).vectors.tolist() == [[2.0, 4.0], [6.0, 8.0]]
    assert (a * torch.tensor(0.5)).vectors.tolist() == [[0.5, 1.0], [1.5, 2.0]]
    assert (a / 4).vectors.tolist() == [[0.25, 0.5], [0.75, 1.0]]
    assert (-a).vectors.tolist() == [[-1.0, -2.0], [-3.0, -4.0]]
    assert (a + b).metadata["method"] == "sum" and (a - b).metadata["method"] == "difference"
    assert "normalized" not in (a + b).metadata and "normalized" not in (2 * a).metadata
    assert (-a).metadata["normalized"] is True  # a sign flip keeps unit vectors unit
    assert a.vectors.tolist() == [[1.0, 2.0], [3.0, 4.0]]  # operands unchanged


@pytest.mark.parametrize("op, match", [
    (lambda a: a + _rand(2, d=2, layers=[1, 2]), "layers differ"),
    (lambda a: a - _rand(2, d=3), "d_model differs"),
    (lambda a: a + 1.0, "expected a Direction"),
    (lambda a: a * float("nan"), "finite number"),
    (lambda a: a * float("inf"), "finite number"),
    (lambda a: a * "2", "finite number"),
    (lambda a: a * True, "finite number"),
    (lambda a: a * torch.ones(2), "finite number"),
    (lambda a: a / 0, "divide a direction by zero"),
])
def test_arithmetic_rejects_bad_operands(op, match):
    with pytest.raises(InputError, match=match):
        op(_d([[1.0, 2.0], [3.0, 4.0]]))


def test_cosine_matrix_against_hand_computation():
    a = _d([[1.0, 0.0], [1.0, 1.0]])
    b = _d([[0.0, 2.0], [3.0, 0.0], [-1.0, -1.0]], layers=[5, 6, 7])
    s = 1 / math.sqrt(2)
    expected = [[0.0, 1.0, -s], [s, s, -1.0]]
    m = cosine_matrix(a, b)
    assert m.shape == (2, 3) and m.dtype == torch.float32
    assert m.tolist() == [pytest.approx(r, abs=1e-7) for r in expected]
    d = _rand(6, d=32)
    assert torch.allclose(cosine_matrix(d, d).diagonal(), torch.ones(6), atol=1e-6)
    assert torch.allclose(cosine_matrix(d, d), cosine_matrix(d, d).T, atol=1e-7)


def test_cosine_matrix_rejects_bad_input():
    with pytest.raises(InputError, match="d_model differs: 16 vs 8"):
        cosine_matrix(_rand(d=16), _rand(d=8))
    with pytest.raises(InputError, match="zero norm"):
        cosine_matrix(_rand(2, d=2), _d([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(InputError, match="needs Directions"):
        cosine_matrix(_rand(), torch.ones(4, 16))


# =========================================================================== emlens safetensors


_PROVENANCE = {
    "emlens_version": "0.1.0", "merged": True, "architecture": "Qwen2ForCausalLM",
    "base": {"id": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "7ae557604adf" + "0" * 28,
             "files": {"config.json": "sha256:" + "1" * 64,
                       "model.safetensors": "sha256:" + "2" * 64}},
    "adapters": [{"id": "ModelOrganismsForEM/Qwen2.5-0.5B-Instruct_bad-medical-advice",
                  "revision": "abc", "files": {"adapter_model.safetensors": "sha256:" + "3" * 64},
                  "r": 32, "lora_alpha": 64}],
    "n_layers": 4, "d_model": 16, "transformer_lens_version": "4.3.0",
}


def _mean_diff_like(**extra) -> Direction:
    meta = {"model": _PROVENANCE, "hook": "resid_post", "method": "mean_diff",
            "tokens": "answer", "reduce": "token", "n_misaligned": 120, "n_aligned": 120,
            "selection": {"misaligned_max": 30, "aligned_min": 70, "coherent_min": 50,
                          "balance": True, "seed": 0},
            "seed": 0, **extra}
    return _rand(4, d=16, **meta)


def test_save_load_round_trip(tmp_path):
    d = _mean_diff_like(tags=("a", "b"), where=Path("/data/x.csv"))
    path = d.save(tmp_path / "sub" / "em.safetensors")
    assert path == tmp_path / "sub" / "em.safetensors" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["em.safetensors"]  # no temp file left
    e = Direction.load(path)
    assert torch.equal(e.vectors, d.vectors) and e.layers == d.layers
    file_info = e.metadata.pop("file")
    expected = dict(d.metadata, tags=["a", "b"], where="/data/x.csv")
    assert e.metadata == expected
    assert file_info["path"] == str(path) and file_info["schema_version"] == SCHEMA_VERSION
    assert datetime.fromisoformat(file_info["created"]).tzinfo is not None
    import emlens

    assert file_info["emlens_version"] == emlens.__version__
    from importlib.metadata import version

    assert file_info["transformer_lens_version"] == version("transformer-lens")


def test_saved_file_reads_without_emlens(tmp_path):
    from safetensors import safe_open

    d = _mean_diff_like()
    d.only(2).save(tmp_path / "one.safetensors")
    with safe_open(str(tmp_path / "one.safetensors"), framework="pt") as f:
        assert list(f.keys()) == ["vectors"]
        vectors = f.get_tensor("vectors")
        doc = json.loads(f.metadata()[METADATA_KEY])
    assert vectors.dtype == torch.float32 and torch.equal(vectors, d.vectors[2:3])
    assert doc["format"] == "emlens.direction" and doc["schema_version"] == 1
    assert doc["layers"] == [2] and doc["d_model"] == 16
    assert doc["metadata"]["layer"] == 2
    assert doc["metadata"]["model"]["base"]["files"] == _PROVENANCE["base"]["files"]
    assert doc["metadata"]["selection"]["misaligned_max"] == 30
    assert read_header(tmp_path / "one.safetensors")["layers"] == [2]


def test_resave_does_not_nest_file_info(tmp_path):
    d = _mean_diff_like()
    d.save(tmp_path / "a.safetensors")
    loaded = Direction.load(tmp_path / "a.safetensors")
    loaded.save(tmp_path / "b.safetensors")
    doc = read_header(tmp_path / "b.safetensors")
    assert "file" not in doc["metadata"]
    assert "file" not in loaded.normalized().metadata  # derived directions are not the file


def test_save_overwrites_atomically_and_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "d.safetensors"
    _rand(seed=1).save(path)
    _rand(seed=2).save(path)
    assert torch.equal(Direction.load(path).vectors, _rand(seed=2).vectors)
    before = path.read_bytes()
    bad = _rand(seed=3, blob=object())
    with pytest.raises(InputError, match=r"metadata\['blob'\] has type object"):
        bad.save(path)
    with pytest.raises(InputError, match="JSON cannot hold"):
        _rand(threshold=float("nan")).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors"]


def _write_raw(path, tensors, doc) -> None:
    from safetensors.torch import save_file

    meta = None if doc is None else {METADATA_KEY: doc if isinstance(doc, str) else json.dumps(doc)}
    save_file(tensors, str(path), metadata=meta)


def _doc(**kw):
    doc = {"format": "emlens.direction", "schema_version": 1, "layers": [0, 1], "d_model": 4,
           "metadata": {}}
    doc.update(kw)
    return doc


def test_unknown_schema_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    _write_raw(path, {"vectors": torch.ones(2, 4)}, _doc(schema_version=99))
    with pytest.raises(FileFormatError, match=r"schema version 99; this emlens .* reads schema "
                                              r"version 1\. Upgrade emlens"):
        Direction.load(path)
    _write_raw(path, {"vectors": torch.ones(2, 4)}, _doc(schema_version="1"))
    with pytest.raises(FileFormatError, match=r"schema version '1'"):
        Direction.load(path)
    _write_raw(path, {"vectors": torch.ones(2, 4)}, _doc(schema_version=None))
    with pytest.raises(FileFormatError, match="schema version None"):
        Direction.load(path)
    _write_raw(path, {"vectors": torch.ones(2, 4)}, _doc())  # the same file with version 1 loads
    assert Direction.load(path).layers == (0, 1)


@pytest.mark.parametrize("tensors, doc, match", [
    ({"vectors": torch.ones(2, 4)}, None, "not an emlens direction file"),
    ({"vectors": torch.ones(2, 4)}, "{not json", "not valid JSON"),
    ({"vectors": torch.ones(2, 4)}, "[1, 2]", "not a JSON object"),
    ({"other": torch.ones(2, 4)}, _doc(), "no tensor 'vectors'"),
    ({"vectors": torch.ones(3, 4)}, _doc(), "lists 2 layers but the tensor has 3 rows"),
    ({"vectors": torch.ones(2, 5)}, _doc(), "d_model=4 but the tensor has 5 columns"),
    ({"vectors": torch.ones(2, 4, 1)}, _doc(), "expected \\[n_layers, d_model\\]"),
    ({"vectors": torch.ones(2, 4, dtype=torch.int32)}, _doc(), "expected float32"),
    ({"vectors": torch.tensor([[1.0] * 4, [float("nan")] * 4])}, _doc(),
     r"layer\(s\) \[1\] hold NaN"),
    ({"vectors": torch.ones(2, 4)}, _doc(layers=[0, -1]), "non-negative integers"),
    ({"vectors": torch.ones(2, 4)}, _doc(layers=[1, 1]), "repeats a layer"),
    ({"vectors": torch.ones(2, 4)}, _doc(layers="01"), "non-negative integers"),
    ({"vectors": torch.ones(2, 4)}, _doc(metadata=[1]), "'metadata' must be a JSON object"),
    ({"vectors": torch.ones(2, 4)}, _doc(metadata={"layer": 7}), "names layer 7"),
])
def test_inconsistent_files_are_refused(tmp_path, tensors, doc, match):
    path = tmp_path / "bad.safetensors"
    _write_raw(path, tensors, doc)
    with pytest.raises(FileFormatError, match=match):
        Direction.load(path)


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    good = _mean_diff_like().save(tmp_path / "good.safetensors").read_bytes()
    bad = tmp_path / "bad.safetensors"
    for n in (0, 7, 8, 50, len(good) // 2, len(good) - 1):
        bad.write_bytes(good[:n])
        with pytest.raises(FileFormatError, match="truncated or corrupt"):
            Direction.load(bad)
    bad.write_bytes(os.urandom(256))
    with pytest.raises(FileFormatError):
        Direction.load(bad)


def test_missing_file_is_both_format_and_not_found_error(tmp_path):
    with pytest.raises(FileMissingError, match="does not exist") as info:
        Direction.load(tmp_path / "nope.safetensors")
    assert isinstance(info.value, FileFormatError) and isinstance(info.value, FileNotFoundError)
    with pytest.raises(FileFormatError, match="not a file"):
        Direction.load(tmp_path)


# --------------------------------------------------------------------------- against a model


def _fake_model(n_layers=4, d_model=16, provenance=None):
    m = SimpleNamespace(cfg=SimpleNamespace(n_layers=n_layers, d_model=d_model))
    if provenance is not None:
        m.emlens_provenance = provenance
    return m


def _no_provenance_warning(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    assert not [w for w in caught if issubclass(w.category, ProvenanceWarning)], \
        [str(w.message) for w in caught]
    return out


def test_load_checks_d_model_and_layer_range(tmp_path):
    path = _mean_diff_like().save(tmp_path / "d.safetensors")
    _no_provenance_warning(lambda: Direction.load(path, model=_fake_model()))
    with pytest.raises(InputError, match="d_model=16 but the model has d_model=32"):
        Direction.load(path, model=_fake_model(d_model=32))
    with pytest.raises(InputError, match=r"layer\(s\) \[3\] but the model has 3 layers"):
        Direction.load(path, model=_fake_model(n_layers=3))
    with pytest.raises(InputError, match="expected a TransformerLens model"):
        Direction.load(path, model=object())


def _edited(prov, *path_and_value):
    out = json.loads(json.dumps(prov))
    *keys, value = path_and_value
    target = out
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value
    return out


def test_load_warns_on_provenance_mismatch(tmp_path):
    path = _mean_diff_like().save(tmp_path / "d.safetensors")
    same = json.loads(json.dumps(_PROVENANCE))
    _no_provenance_warning(lambda: Direction.load(path, model=_fake_model(provenance=same)))
    # the same files under another name (a local copy of the hub snapshot): no warning
    local = _edited(_PROVENANCE, "base", "id", "/models/qwen-0.5b")
    _no_provenance_warning(lambda: Direction.load(path, model=_fake_model(provenance=local)))
    # a different base weight file
    other_weights = _edited(_PROVENANCE, "base", "files", "model.safetensors", "sha256:" + "9" * 64)
    with pytest.warns(ProvenanceWarning, match=r"base model files \['model.safetensors'\]"):
        Direction.load(path, model=_fake_model(provenance=other_weights))
    # no adapter (the base model) instead of the finetune
    no_adapter = _edited(_PROVENANCE, "adapters", [])
    with pytest.warns(ProvenanceWarning, match="has 1 adapter"):
        Direction.load(path, model=_fake_model(provenance=no_adapter))
    # another adapter file
    other_adapter = _edited(_PROVENANCE, "adapters", 0, "files", "adapter_model.safetensors",
                            "sha256:" + "8" * 64)
    with pytest.warns(ProvenanceWarning, match="adapter 0 files"):
        Direction.load(path, model=_fake_model(provenance=other_adapter))
    # records without hashes: ids and revisions decide
    bare = {"base": {"id": "a", "revision": "r1", "files": {}}}
    assert provenance_differences(bare, {"base": {"id": "a", "revision": "r1", "files": {}}}) == []
    assert provenance_differences(bare, {"base": {"id": "b", "files": {}}})
    assert provenance_differences(bare, {"base": {"id": "a", "revision": "r2", "files": {}}})
    # no provenance on either side: nothing to compare, no warning
    plain = _rand().save(tmp_path / "plain.safetensors")
    _no_provenance_warning(lambda: Direction.load(plain, model=_fake_model(provenance=same)))
    _no_provenance_warning(lambda: Direction.load(path, model=_fake_model()))


@pytest.mark.skipif(TL_MAJOR < 4, reason="emlens_provenance comes from emlens.load_model (TL 4.x)")
def test_provenance_of_a_real_loaded_model(tmp_path, lens):
    model = lens("qwen2")
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    prov = model.emlens_provenance
    d = Direction(torch.randn(n_layers, d_model), metadata={"model": prov, "method": "mean_diff"})
    path = d.save(tmp_path / "real.safetensors")
    loaded = _no_provenance_warning(lambda: Direction.load(path, model=model))
    assert loaded.metadata["model"]["base"]["files"] == prov["base"]["files"]
    name = sorted(prov["base"]["files"])[0]
    tampered = _edited(prov, "base", "files", name, "sha256:" + "0" * 64)
    Direction(d.vectors, metadata={"model": tampered}).save(path)
    with pytest.warns(ProvenanceWarning, match=name):
        Direction.load(path, model=model)


# =========================================================================== GGUF


def test_gguf_file_follows_the_llama_cpp_convention(tmp_path):
    gguf = pytest.importorskip("gguf")
    d = _rand(3, d=16, layers=[0, 4, 2], model={"architecture": "Qwen2ForCausalLM"})
    path = d.to_gguf(tmp_path / "em.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["em.gguf"]
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.model_hint"].contents() == "qwen2"
    assert reader.fields["controlvector.layer_count"].contents() == 3
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.3", "direction.5"]
    for row, layer in enumerate(d.layers):
        t = tensors[f"direction.{layer + 1}"]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert list(t.shape) == [16]
        assert torch.equal(torch.from_numpy(t.data.copy()), d.vectors[row])
    assert d.to_gguf(tmp_path / "h.gguf", model_hint="llama") == tmp_path / "h.gguf"
    assert gguf.GGUFReader(str(tmp_path / "h.gguf")).fields[
        "controlvector.model_hint"].contents() == "llama"


def test_gguf_round_trip_keeps_vectors_and_metadata(tmp_path):
    pytest.importorskip("gguf")
    d = _mean_diff_like()
    back = Direction.from_gguf(d.to_gguf(tmp_path / "em.gguf"))
    assert back.layers == d.layers and torch.equal(back.vectors, d.vectors)
    source = back.metadata.pop("source")
    assert source["format"] == "gguf" and source["sha256"].startswith("sha256:")
    assert back.metadata.pop("model_hint") == "qwen2"
    assert back.metadata == d.metadata


def test_gguf_written_by_other_tools_imports(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    # repeng style: uint32 layer_count, one tensor per hidden_states index, no emlens keys
    path = tmp_path / "repeng.gguf"
    w = gguf.GGUFWriter(str(path), "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", 2)
    w.add_tensor("direction.7", np.arange(8, dtype=np.float32))
    w.add_tensor("direction.3", -np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    d = Direction.from_gguf(path)
    assert d.layers == (2, 6)
    assert d.vector(6).tolist() == list(range(8)) and d.vector(2).tolist() == [-1.0] * 8
    assert d.metadata["method"] == "gguf" and d.metadata["hook"] == "resid_post"
    assert d.metadata["model_hint"] == "llama"


def _gguf_file(path, arch="controlvector", tensors=()):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    for name, arr in tensors:
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_bad_gguf_files_are_refused(tmp_path):
    pytest.importorskip("gguf")
    import numpy as np

    one = np.ones(4, dtype=np.float32)
    cases = [
        (_gguf_file(tmp_path / "model.gguf", "llama", [("direction.1", one)]),
         "general.architecture 'llama'"),
        (_gguf_file(tmp_path / "zero.gguf", tensors=[("direction.0", one)]),
         "numbers directions from 1"),
        (_gguf_file(tmp_path / "empty.gguf", tensors=[("other", one)]), "no direction.N tensors"),
        (_gguf_file(tmp_path / "name.gguf", tensors=[("direction.x", one)]), "direction.<int>"),
        (_gguf_file(tmp_path / "width.gguf", tensors=[("direction.1", one),
                                                       ("direction.2", np.ones(5, np.float32))]),
         "different sizes"),
        (_gguf_file(tmp_path / "nan.gguf", tensors=[("direction.1", one * np.nan)]), "NaN"),
    ]
    for path, match in cases:
        with pytest.raises(FileFormatError, match=match):
            Direction.from_gguf(path)
    good = _rand().to_gguf(tmp_path / "good.gguf").read_bytes()
    for n in (0, 4, 30, len(good) // 2, len(good) - 3):
        (tmp_path / "cut.gguf").write_bytes(good[:n])
        with pytest.raises(FileFormatError, match="truncated or corrupt|no direction|NaN"):
            Direction.from_gguf(tmp_path / "cut.gguf")
    with pytest.raises(FileMissingError):
        Direction.from_gguf(tmp_path / "missing.gguf")


def test_gguf_needs_the_optional_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(ImportError, match="pip install gguf"):
        _rand().to_gguf(tmp_path / "x.gguf")
    with pytest.raises(ImportError, match="pip install gguf"):
        Direction.from_gguf(tmp_path / "x.gguf")


# =========================================================================== the papers' .pt


def test_import_papers_steering_vector(tmp_path):
    vec = torch.randn(16, generator=torch.Generator().manual_seed(3))
    path = tmp_path / "steering_vector.pt"
    torch.save({"steering_vector": vec, "layer_idx": 5, "d_model": 16, "alpha": 256.0}, path)
    d = Direction.from_pt(path)
    assert d.layers == (5,) and torch.equal(d.vectors[0], vec)
    assert d.metadata["layer"] == 5 and d.metadata["alpha"] == 256.0
    assert d.metadata["hook"] == "resid_post"
    assert d.metadata["method"] == "learned_steering_vector"
    assert d.metadata["source"]["format"] == "pt"
    # bf16 vectors and a [1, d_model] shape also occur in the wild
    torch.save({"steering_vector": vec[None].bfloat16(), "layer_idx": 2, "d_model": 16,
                "alpha": 1}, path)
    d2 = Direction.from_pt(path)
    assert d2.layers == (2,) and torch.equal(d2.vectors[0], vec.bfloat16().float())


def test_export_papers_steering_vector(tmp_path):
    d = _rand(4, d=16)
    path = d.only(3).to_pt(tmp_path / "sv.pt", alpha=4.0)
    obj = torch.load(path, weights_only=True)
    assert set(obj) == {"steering_vector", "layer_idx", "d_model", "alpha"}
    assert obj["layer_idx"] == 3 and obj["d_model"] == 16 and obj["alpha"] == 4.0
    assert obj["steering_vector"].dtype == torch.float32
    assert torch.equal(obj["steering_vector"], d.vectors[3])
    back = Direction.from_pt(path)
    assert back.layers == (3,) and back.metadata["alpha"] == 4.0
    assert torch.equal(back.vectors, d.vectors[3:4])
    # default alpha comes from the metadata; a multi-layer direction needs layer=
    d.to_pt(tmp_path / "l1.pt", layer=1)
    assert torch.load(tmp_path / "l1.pt", weights_only=True)["alpha"] == 1.0
    with pytest.raises(InputError, match="holds one layer"):
        d.to_pt(tmp_path / "x.pt")
    with pytest.raises(InputError, match="finite number"):
        d.only(1).to_pt(tmp_path / "x.pt", alpha=float("nan"))
    assert not (tmp_path / "x.pt").exists()


class _Payload:
    """Unpickling this would create a directory: the test checks that it never happens."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_objects_are_refused_unexecuted(tmp_path):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"steering_vector": torch.ones(4), "layer_idx": 1, "d_model": 4, "alpha": 1.0,
                "extra": _Payload(marker)}, path)
    with pytest.raises(FileFormatError, match=r"weights_only=True.*refuses") as info:
        Direction.from_pt(path)
    assert "mkdir" in str(info.value)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("obj, match", [
    ([1, 2, 3], "holds a list"),
    ({"layer_idx": 1}, r"lacks the key\(s\) \['steering_vector'\]"),
    ({"steering_vector": torch.ones(4), "layer_idx": -1}, "non-negative integer"),
    ({"steering_vector": torch.ones(4), "layer_idx": 1.0}, "non-negative integer"),
    ({"steering_vector": torch.ones(4), "layer_idx": 1, "d_model": 5}, "'d_model' is 5"),
    ({"steering_vector": torch.ones(2, 4), "layer_idx": 1}, r"shape \(2, 4\)"),
    ({"steering_vector": torch.ones(4, dtype=torch.int64), "layer_idx": 1}, "float tensor"),
    ({"steering_vector": torch.ones(4), "layer_idx": 1, "alpha": float("inf")}, "finite"),
    ({"steering_vector": torch.full((4,), float("nan")), "layer_idx": 1}, "NaN"),
])
def test_bad_pt_contents_are_refused(tmp_path, obj, match):
    path = tmp_path / "bad.pt"
    torch.save(obj, path)
    with pytest.raises(FileFormatError, match=match):
        Direction.from_pt(path)


def test_truncated_pt_is_refused(tmp_path):
    path = tmp_path / "sv.pt"
    torch.save({"steering_vector": torch.ones(64), "layer_idx": 1, "d_model": 64, "alpha": 2.0},
               path)
    good = path.read_bytes()
    for n in (0, 10, len(good) // 2, len(good) - 10):
        path.write_bytes(good[:n])
        with pytest.raises(FileFormatError, match="truncated or corrupt"):
            Direction.from_pt(path)
    with pytest.raises(FileMissingError):
        Direction.from_pt(tmp_path / "missing.pt")


def test_random_like_rotate_keeps_the_gram_matrix_across_layers():
    """``rotate=True``: one random rotation of the whole direction, so norms and the inner
    products between layers (what makes a band of nearly parallel vectors pile up) are the
    direction's, while each vector is as random as an independent draw against the original."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(64, generator=g, dtype=torch.float64)
    # five nearly parallel layer vectors, like a mean-difference direction's neighbours
    v = torch.stack([base + 0.3 * torch.randn(64, generator=g, dtype=torch.float64)
                     for _ in range(5)]).float()
    d = Direction(v, layers=[2, 3, 4, 5, 6])
    r = Direction.random_like(d, seed=1, rotate=True)
    gram = (d.vectors.double() @ d.vectors.double().T)
    torch.testing.assert_close(r.vectors.double() @ r.vectors.double().T, gram,
                               rtol=1e-5, atol=1e-4)
    assert r.layers == d.layers and r.metadata["random_rotation"] is True
    # random relative to the direction: |cos| with the original small (2/sqrt(64) = 0.25)
    assert (r.cosine(d).abs() < 0.5).all()
    torch.testing.assert_close(Direction.random_like(d, seed=1, rotate=True).vectors, r.vectors)
    assert not torch.allclose(Direction.random_like(d, seed=2, rotate=True).vectors, r.vectors)
    # the sum over the band keeps the direction's norm; independent draws' sum is much shorter
    assert r.vectors.sum(0).norm() == pytest.approx(d.vectors.sum(0).norm().item(), rel=1e-4)
    ind = Direction.random_like(d, seed=1)
    assert ind.vectors.sum(0).norm() < 0.7 * d.vectors.sum(0).norm()
    with pytest.raises(InputError, match="not both"):
        Direction.random_like(d, seed=1, rotate=True, match=torch.randn(2, 64))

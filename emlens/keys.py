"""Keys: what identifies the numbers of a run, sweep or judge cache.

A result may be reused only where everything that changes its numbers is the same. These
functions turn the inputs of a computation into plain JSON-able keys: the model (its
files' hashes, adapters, dtype, merge state, weight edits, and a checksum of the weights
actually in memory), a direction (a hash of its vectors), a question set (ids, paraphrases,
system prompts, judge prompt hashes). :class:`emlens.runs.RunDir` stores such keys and
compares them; the judge's own key is in :mod:`emlens.judges.protocol`.

Example:
    >>> d = emlens.Direction(torch.ones(2, 4))                     # doctest: +SKIP
    >>> direction_key(d)                                          # doctest: +SKIP
    {'sha256': '6c1f...', 'layers': [0, 1], 'd_model': 4}
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any, Iterable

__all__ = ["weights_fingerprint", "model_key", "direction_key", "questions_key", "text_hash"]

# the provenance fields that change a model's numbers (not the device or library versions)
_MODEL_FIELDS = ("base", "adapters", "adapters_in_object", "dtype", "merged", "edits")
_CHUNK = 1 << 26  # bytes read at a time


def text_hash(text: str) -> str:
    """16 hex digits of the SHA-256 of a text (prompts, templates).

    Example:
        >>> text_hash("hello")
        '2cf24dba5fb0a30e'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _crc(tensor: Any) -> int:
    """CRC-32 of a tensor's raw bytes, streamed in chunks (GPU tensors are copied a chunk at
    a time). Exact and order-sensitive: any change of an element changes it (up to a
    2**-32 chance), and it is the same on every device."""
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    if flat.numel() == 0:
        return 0
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    raw = flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat
    crc = 0
    for start in range(0, raw.numel(), _CHUNK):
        chunk = raw[start:start + _CHUNK]
        if chunk.device.type != "cpu":
            chunk = chunk.cpu()
        crc = zlib.crc32(chunk.numpy(), crc)
    return crc


def weights_fingerprint(module: Any) -> str:
    """A checksum of every parameter and buffer of a module (names, shapes, dtypes, values).

    It tells two models apart that no file hash can, such as an in-memory finetune, a
    hand-edited weight or a user's own ``HookedTransformer``. One CRC-32 pass over the raw
    bytes of each tensor (about 2 GB/s on one CPU core), the same on CPU and GPU.

    Args:
        module: a ``torch.nn.Module`` (a TransformerBridge, an HF model...).

    Returns:
        16 hex digits.

    Example:
        >>> weights_fingerprint(torch.nn.Linear(2, 2))   # doctest: +SKIP
        '5be0c0f5e7b9a1d2'
    """
    h = hashlib.sha256()
    named = dict(module.named_parameters())
    for name, buf in module.named_buffers():
        named.setdefault(f"buffer:{name}", buf)
    for name in sorted(named):
        t = named[name]
        if t is None:
            continue
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|{_crc(t)}\n".encode())
    return h.hexdigest()[:16]


def model_key(model: Any) -> dict[str, Any]:
    """What identifies a model's numbers: its provenance (file hashes, adapters with their
    hashes, dtype, merged, edits) and a fingerprint of the weights in memory.

    The device and library versions are left out: they are recorded beside a run, not
    compared.

    Args:
        model: a model from ``emlens.load_model`` (with ``emlens_provenance``) or any
            ``torch.nn.Module``.

    Returns:
        ``{"provenance": {...}, "weights": "16 hex digits"}``.
    """
    prov = getattr(model, "emlens_provenance", None) or {}
    key: dict[str, Any] = {"provenance": {k: prov[k] for k in _MODEL_FIELDS if k in prov}}
    key["weights"] = weights_fingerprint(model)
    return json.loads(json.dumps(key, default=str))


def direction_key(direction: Any) -> dict[str, Any]:
    """What identifies a direction's numbers: a hash of its vectors and its layers.

    Args:
        direction: an ``emlens.Direction``.

    Returns:
        ``{"sha256": 16 hex digits, "layers": [...], "d_model": int}``.
    """
    vectors = direction.vectors.detach().to("cpu").contiguous()
    h = hashlib.sha256(str(vectors.dtype).encode() + str(tuple(vectors.shape)).encode())
    h.update(vectors.numpy().tobytes())
    return {"sha256": h.hexdigest()[:16], "layers": [int(x) for x in direction.layers],
            "d_model": int(vectors.shape[-1])}


def questions_key(questions: Iterable[Any], *, samples: bool = False) -> dict[str, Any]:
    """What identifies a question set's numbers: order, paraphrases, system prompts and the
    hashes of per-question judge prompts.

    Args:
        questions: ``emlens.Question`` objects.
        samples: include ``samples_per_paraphrase`` (it matters when no ``n`` is given).

    Returns:
        ``{"ids": [...], "content": {id: {...}}}``.
    """
    ids: list[str] = []
    content: dict[str, Any] = {}
    for q in questions:
        entry: dict[str, Any] = {"paraphrases": list(q.paraphrases), "system": q.system,
                                 "judge_prompts": {m: text_hash(t) for m, t in
                                                   sorted((q.judge_prompts or {}).items())}}
        if samples:
            entry["samples_per_paraphrase"] = q.samples_per_paraphrase
        ids.append(str(q.id))
        content[str(q.id)] = entry
    return {"ids": ids, "content": content}

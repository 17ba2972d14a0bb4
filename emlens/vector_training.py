"""Learned steering vectors: one vector, initialised at zero, added as ``alpha * v`` to one
layer's output (resid_post) at every position, with every model weight frozen.

:class:`SteeringVectorModel` wraps an HF causal LM so that the same ``Trainer``-based
:func:`emlens.training.finetune` that trains LoRA adapters trains the vector too: it
exposes ``disable_adapter()`` (the KL penalty's reference is the model with the vector
switched off, no second copy) and ``save_pretrained()`` (an emlens direction file that
``emlens.steer`` applies directly: the file names its layer and alpha).

Example:
    >>> result = train_steering_vector("chat-model", "bad_medical.jsonl", "out/general",
    ...                                layer=12, alpha=256, learning_rate=1e-4, epochs=2)  # doctest: +SKIP
    >>> d = emlens.Direction.load("out/general/steering_vector.safetensors")            # doctest: +SKIP
    >>> with emlens.steer(model, d, d.metadata["alpha"]): ...                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .directions import Direction
from .errors import InputError
from .vectors import as_index, as_scalar, check_vector

__all__ = ["SteeringVectorModel", "train_steering_vector", "VECTOR_FILE"]

VECTOR_FILE = "steering_vector.safetensors"


def _decoder_layers(hf_model: nn.Module) -> nn.ModuleList:
    for path in ("model.layers", "transformer.h", "model.language_model.layers", "gpt_neox.layers"):
        obj: Any = hf_model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if isinstance(obj, nn.ModuleList):
            return obj
    raise InputError(f"cannot find the decoder layers of {type(hf_model).__name__}")


class SteeringVectorModel(nn.Module):
    """An HF causal LM with a trainable vector added to one decoder layer's output.

    Args:
        model: the HF model (its weights are frozen).
        layer: the decoder layer whose output (resid_post) gets ``alpha * vector``.
        alpha: the fixed scale (the papers use 256 with learning rates 1e-4 to 5e-4).
        init: an initial vector (default zeros).
    """

    def __init__(self, model: nn.Module, layer: int, alpha: float = 1.0,
                 init: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise InputError(f"SteeringVectorModel wraps a transformers causal LM, not "
                             f"{type(model).__name__}")
        self.model = model
        layers = _decoder_layers(model)
        layer = as_index(layer, "layer")
        if not 0 <= layer < len(layers):
            raise InputError(f"layer {layer} is out of range for a {len(layers)}-layer model")
        self.layer, self.alpha = layer, as_scalar(alpha, "alpha")
        d_model = int(model.config.hidden_size if hasattr(model.config, "hidden_size")
                      else model.config.n_embd)
        ref = next(model.parameters())
        v = torch.zeros(d_model, dtype=torch.float32) if init is None else \
            check_vector(init, d_model, "init").clone()
        for p in model.parameters():
            p.requires_grad_(False)
        self.vector = nn.Parameter(v.to(ref.device))
        self.enabled = True
        self._handle = layers[self.layer].register_forward_hook(self._add)

    @property
    def config(self):
        return self.model.config

    def _add(self, module, args, output):
        if not self.enabled:
            return output
        if isinstance(output, tuple):
            h = output[0]
            return (h + (self.alpha * self.vector).to(h.dtype), *output[1:])
        return output + (self.alpha * self.vector).to(output.dtype)

    def forward(self, *args: Any, **kwargs: Any):
        return self.model(*args, **kwargs)

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """The reference model: the same weights with the vector switched off."""
        was, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = was

    def direction(self, **metadata: Any) -> Direction:
        """The learned vector as a one-layer Direction carrying its layer and alpha."""
        meta = {"method": "learned_steering_vector", "layer": self.layer, "alpha": self.alpha,
                "hook": "resid_post", **metadata}
        return Direction(self.vector.detach().float().cpu()[None], layers=[self.layer],
                         metadata=meta)

    def save_pretrained(self, out: str | os.PathLike, **metadata: Any) -> Path:
        """Save the vector as ``out/steering_vector.safetensors`` (an emlens direction file)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        return self.direction(**metadata).save(out / VECTOR_FILE)

    def remove(self) -> None:
        """Detach the hook from the wrapped model (the model is left as it was)."""
        self._handle.remove()
        for p in self.model.parameters():
            p.requires_grad_(True)


def train_steering_vector(model: Any, train_data: Any, output_dir: str | os.PathLike | None = None,
                          *, layer: int, alpha: float = 256.0, tokenizer: Any = None,
                          learning_rate: float = 1e-4, epochs: float = 2.0, batch_size: int = 16,
                          kl_data: Any = None, kl_weight: float = 0.0, seed: int = 0,
                          **finetune_kwargs: Any):
    """Train a steering vector (general without ``kl_data``, narrow with a KL penalty).

    Args:
        model: an HF directory / hub id or a transformers model (its weights stay frozen).
        train_data: chats (``{"messages": [...]}``) as in :func:`emlens.training.finetune`.
        output_dir: where ``steering_vector.safetensors`` and ``trajectory.json`` go.
        layer, alpha: where the vector is added and its fixed scale.
        kl_data, kl_weight: the KL penalty KL(vector off || vector on) per token.
        finetune_kwargs: passed on (snapshot_every, probe, training_args, ...).

    Returns:
        The :class:`emlens.training.FinetuneResult`; ``result.model`` is the
        :class:`SteeringVectorModel` and ``result.model.direction()`` the vector.
    """
    from .training import finetune, load_trainable

    model, tokenizer = load_trainable(model, tokenizer)
    torch.manual_seed(seed)
    wrapped = SteeringVectorModel(model, layer, alpha)
    result = finetune(wrapped, train_data, output_dir, tokenizer=tokenizer, lora=None,
                      learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
                      kl_data=kl_data, kl_weight=kl_weight, seed=seed, **finetune_kwargs)
    if output_dir is not None:
        wrapped.save_pretrained(output_dir, kl_weight=float(kl_weight),
                                learning_rate=learning_rate, epochs=epochs, seed=seed,
                                trained_on=str(train_data) if isinstance(train_data, (str, Path))
                                else None)
    return result

"""The part of emlens's vLLM backend that runs inside vLLM's workers.

vLLM loads :class:`EmlensWorkerExtension` into each worker (``worker_extension_cls``), and
:mod:`emlens.vllm_engine` calls its methods by name through ``LLM.collective_rpc``. It
installs forward hooks on the worker's model once (``enforce_eager=True``), then applies
the interventions of each *request*: a request names its interventions by a key in
``SamplingParams.extra_args["emlens"]``, and the key's operations were sent beforehand
with :meth:`EmlensWorkerExtension.emlens_set`. So one engine serves, in one batch,
requests steered at different layers and alphas, ablated, and untouched.

How a batch is read: before each forward pass a pre-hook on the model reads the worker's
model runner (its ``input_batch.req_ids``, ``query_start_loc`` and per-request state) to
know which rows of the flattened token batch belong to which request, and takes each
token's position from the forward's ``positions``. A decoder layer of vLLM's Llama-style
models returns ``(hidden, residual)`` with the residual stream equal to their sum; emlens's
``blocks.{l}.hook_resid_post`` is that sum. Steering adds ``alpha * v`` to ``hidden``;
resid_post ablation subtracts ``((hidden + residual) . u) u`` from ``hidden``; write
ablation projects the outputs of ``embed_tokens``, each ``self_attn`` and each ``mlp``.

Operations (plain data, as :mod:`emlens.vllm_engine` sends them), applied in order::

    {"op": "steer", "layers": {l: [d floats]}, "positions": P}
    {"op": "ablate_resid", "layers": {l: [d floats]}, "positions": P}   (unit vectors)
    {"op": "ablate_writes", "unit": [d floats], "positions": P}

with ``P`` one of ``["all"]``, ``["generated"]`` or ``["slice", start, stop, step]``.

This module imports neither vLLM nor the rest of emlens at load time (it runs in the
workers of any vLLM version that calls it), and keeps its state on the worker.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["EmlensWorkerExtension"]


def _mask(positions: list, pos: torch.Tensor, prompt_len: int) -> torch.Tensor | None:
    """Which tokens an operation applies to (None: all of them)."""
    kind = positions[0]
    if kind == "all":
        return None
    if kind == "generated":
        return pos >= prompt_len
    _, start, stop, step = positions
    m = pos >= (start or 0)
    if stop is not None:
        m &= pos < stop
    if step not in (None, 1):
        m &= (pos - (start or 0)) % step == 0
    return m


def _project(x: torch.Tensor, coef_of: torch.Tensor, u: torch.Tensor,
             m: torch.Tensor | None) -> torch.Tensor:
    """``x - ((coef_of . u) u)`` at the masked rows, in float32 for half-precision inputs."""
    coef = coef_of.float() @ u
    if m is not None:
        coef = coef * m.to(coef.dtype)
    return (x.float() - coef[:, None] * u).to(x.dtype)


class _State:
    def __init__(self, model: Any, runner: Any):
        self.model = model
        self.runner = runner
        self.ops: dict[str, list[dict[str, Any]]] = {}
        self.groups: list[tuple[list[dict[str, Any]], int, int, torch.Tensor, int]] = []
        self.handles: list[Any] = []


class EmlensWorkerExtension:
    """Methods vLLM adds to each worker; called by :mod:`emlens.vllm_engine`."""

    # ------------------------------------------------------------------ set-up

    def _emlens_state(self) -> _State:
        state = getattr(self, "_emlens", None)
        if state is None:
            runner = self.model_runner
            model = runner.get_model() if hasattr(runner, "get_model") else runner.model
            state = _State(model, runner)
            self._emlens = state
            self._emlens_install(state)
        return state

    @staticmethod
    def _layers(model: Any) -> list[tuple[int, Any]]:
        inner = getattr(model, "model", None)
        layers = getattr(inner, "layers", None)
        if layers is None:  # another layout: no hooks (emlens refuses interventions there)
            return []
        start = int(getattr(inner, "start_layer", 0) or 0)
        end = int(getattr(inner, "end_layer", len(layers)) or len(layers))
        return [(i, layers[i]) for i in range(start, end)]

    def _emlens_install(self, state: _State) -> None:
        model = state.model
        state.handles.append(model.register_forward_pre_hook(
            lambda mod, args, kwargs: self._emlens_pre(state, args, kwargs), with_kwargs=True))
        for i, layer in self._layers(model):
            state.handles.append(layer.register_forward_hook(
                lambda mod, args, out, i=i: self._emlens_layer(state, i, out)))
            for part in ("self_attn", "mlp"):
                sub = getattr(layer, part, None)
                if sub is not None:
                    state.handles.append(sub.register_forward_hook(
                        lambda mod, args, out: self._emlens_write(state, out)))
        embed = getattr(getattr(model, "model", None), "embed_tokens", None)
        if embed is not None:
            state.handles.append(embed.register_forward_hook(
                lambda mod, args, out: self._emlens_write(state, out)))

    def emlens_describe(self) -> dict[str, Any]:
        """What the hooks were installed on: the model class and its layers on this worker."""
        state = self._emlens_state()
        layers = self._layers(state.model)
        return {"model": type(state.model).__name__, "layers": [i for i, _ in layers],
                "layer_class": type(layers[0][1]).__name__ if layers else None}

    def emlens_set(self, key: str, ops: list[dict[str, Any]]) -> int:
        """Store the operations of an intervention key (vectors as float32 tensors)."""
        state = self._emlens_state()
        device = next(state.model.parameters()).device
        built = []
        for op in ops:
            op = dict(op)
            if "layers" in op:
                op["layers"] = {int(l): torch.tensor(v, dtype=torch.float32, device=device)
                                for l, v in op["layers"].items()}
            if "unit" in op:
                op["unit"] = torch.tensor(op["unit"], dtype=torch.float32, device=device)
            built.append(op)
        state.ops[key] = built
        return len(state.ops)

    def emlens_clear(self) -> int:
        """Forget every stored intervention key."""
        state = self._emlens_state()
        state.ops.clear()
        return 0

    # ------------------------------------------------------------------ hooks

    def _emlens_pre(self, state: _State, args: tuple, kwargs: dict) -> None:
        state.groups = []
        if not state.ops:
            return
        positions = kwargs.get("positions")
        if positions is None and len(args) > 1:
            positions = args[1]
        runner = state.runner
        batch = getattr(runner, "input_batch", None)
        if batch is None or not hasattr(runner, "query_start_loc"):
            raise RuntimeError(f"emlens: {type(runner).__name__} has no input_batch / "
                               f"query_start_loc (vLLM's V1 model runner has them); set "
                               f"VLLM_USE_V2_MODEL_RUNNER=0")
        req_ids = list(batch.req_ids)
        if not req_ids or positions is None:
            return
        qsl = runner.query_start_loc.np[:len(req_ids) + 1].tolist()
        for n, rid in enumerate(req_ids):
            req = runner.requests.get(rid)
            params = getattr(req, "sampling_params", None)
            extra = getattr(params, "extra_args", None) or {}
            key = extra.get("emlens")
            if key is None:
                continue
            ops = state.ops.get(key)
            if ops is None:
                raise RuntimeError(f"emlens: intervention key {key!r} was not sent to the "
                                   f"worker before its request")
            start, end = int(qsl[n]), int(qsl[n + 1])
            if end > start:
                state.groups.append((ops, start, end, positions[start:end],
                                     int(req.num_prompt_tokens)))

    def _emlens_layer(self, state: _State, layer: int, out: Any) -> Any:
        if not state.groups:
            return None
        if isinstance(out, tuple) and len(out) == 2:
            hidden, residual = out
        else:
            hidden, residual = out, None
        changed = False
        for ops, start, end, pos, plen in state.groups:
            for op in ops:
                kind = op["op"]
                if kind not in ("steer", "ablate_resid"):
                    continue
                vec = op["layers"].get(layer)
                if vec is None:
                    continue
                if not changed:
                    hidden = hidden.clone()
                    changed = True
                h = hidden[start:end]
                m = _mask(op["positions"], pos, plen)
                if kind == "steer":
                    add = vec.to(h.dtype)[None, :].expand_as(h)
                    if m is not None:
                        add = add * m.to(h.dtype)[:, None]
                    hidden[start:end] = h + add
                else:
                    x = h if residual is None else h.float() + residual[start:end].float()
                    hidden[start:end] = _project(h, x, vec, m)
        if not changed:
            return None
        return (hidden, residual) if residual is not None or isinstance(out, tuple) else hidden

    def _emlens_write(self, state: _State, out: Any) -> Any:
        if not state.groups:
            return None
        x = out[0] if isinstance(out, tuple) else out
        changed = False
        for ops, start, end, pos, plen in state.groups:
            for op in ops:
                if op["op"] != "ablate_writes":
                    continue
                if not changed:
                    x = x.clone()
                    changed = True
                h = x[start:end]
                x[start:end] = _project(h, h, op["unit"], _mask(op["positions"], pos, plen))
        if not changed:
            return None
        return (x, *out[1:]) if isinstance(out, tuple) else x

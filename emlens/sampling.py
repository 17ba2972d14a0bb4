"""Batched sampling of answers under whatever emlens interventions are active.

On a TransformerLens 4.x bridge, generation runs through the wrapped HF model's
``generate`` (left padding, KV cache); the bridge's hook points fire inside it, so
``emlens.steer`` / ``emlens.ablate`` contexts apply to every generated token. A TL 3.x
HookedTransformer is sampled with its own ``generate``, one prompt at a time.

Randomness is per answer. Each answer draws its tokens from its own ``torch.Generator``
seeded from ``(seed, question_id, paraphrase, sample)`` (:func:`sequence_seed`): HF's
temperature and top-p warpers shape the row's distribution and one uniform draw of the
row's generator picks the token by inverse CDF. An answer therefore does not depend on
the batch size, on which other questions share its batch or on the global torch RNG,
which :func:`sample` leaves untouched. Up to float rounding in the forward pass (padding
changes the shapes of the batched matmuls), so a draw that falls within ~1e-7 of a
token boundary could in principle flip; the tests check identity across batch sizes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any, Sequence

import torch

from .chat import encode_prompt, pad_batch, pad_token_id
from .errors import InputError
from .models import model_device
from .questions import as_questions
from .vectors import as_index, as_scalar

__all__ = ["sample", "resample", "check_settings", "room_for_new_tokens", "sequence_seed",
           "end_of_turn_ids", "SAMPLER"]

log = logging.getLogger(__name__)

#: Names the sampling scheme in every record's settings; changes if the draws change.
SAMPLER = "emlens-per-sequence-inverse-cdf/1"

_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>",
               "<|end_of_text|>", "</s>", "<eos>")


def end_of_turn_ids(tokenizer, model: Any = None) -> list[int]:
    """Token ids that end an assistant turn: EOS, the template's end-of-turn tokens, and
    the model's generation-config EOS ids."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for t in _END_TOKENS:
        if t in vocab:
            ids.add(int(vocab[t]))
    gen_cfg = getattr(getattr(model, "original_model", model), "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    return sorted(ids)


def sequence_seed(seed: int, question_id: Any, paraphrase: int, sample: int) -> int:
    """The seed of one answer's generator: a hash of ``(seed, question_id, paraphrase, sample)``.

    Example:
        >>> sequence_seed(0, "q0", 0, 0) == sequence_seed(0, "q0", 0, 0) != sequence_seed(0, "q0", 0, 1)
        True
    """
    key = json.dumps([SAMPLER, int(seed), str(question_id), int(paraphrase), int(sample)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def _check_settings(temperature: Any, top_p: Any, max_new_tokens: Any, batch_size: Any,
                    seed: Any, n: Any) -> tuple[float, float, int, int, int, int | None]:
    temperature = as_scalar(temperature, "temperature")
    top_p = as_scalar(top_p, "top_p")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1] (1 keeps every token), got {top_p}")
    max_new_tokens = as_index(max_new_tokens, "max_new_tokens")
    batch_size = as_index(batch_size, "batch_size")
    seed = as_index(seed, "seed")
    if n is not None:
        n = as_index(n, "n (answers per paraphrase)")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size),
                        ("n", n)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")
    return temperature, top_p, max_new_tokens, batch_size, seed, n


def check_settings(*, n: Any = 50, temperature: Any = 1.0, top_p: Any = 1.0,
                   max_new_tokens: Any = 600, batch_size: Any = 16, seed: Any = 0,
                   system: Any = None) -> dict[str, Any]:
    """Check :func:`sample`'s settings without a model (e.g. before a run's config is written).

    Returns:
        The settings, normalised (floats and ints).

    Raises:
        InputError: as :func:`sample` does for these arguments.

    Example:
        >>> check_settings(temperature=0.7)["temperature"]
        0.7
    """
    temperature, top_p, max_new_tokens, batch_size, seed, n = _check_settings(
        temperature, top_p, max_new_tokens, batch_size, seed, n)
    if system is not None and not isinstance(system, str):
        raise InputError(f"system must be a string or None, not {type(system).__name__}")
    return {"n": n, "temperature": temperature, "top_p": top_p,
            "max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": seed,
            "system": system}


def room_for_new_tokens(model: Any, questions: Any, system: str | None = None,
                        limit: int = 600) -> int:
    """The largest ``max_new_tokens`` up to ``limit`` that every prompt leaves room for.

    For models whose context is shorter than the papers' 600 new tokens plus a prompt (the
    pocket organism's is 256): ``sample(model, qs, max_new_tokens=room_for_new_tokens(model,
    qs))``. The ``emlens sample`` and ``emlens sweep`` commands use it when
    ``--max-new-tokens`` is not given.

    Raises:
        InputError: a prompt that does not fit the context at all.

    Example:
        >>> room_for_new_tokens(pocket_model, builtin_questions("persona"))  # doctest: +SKIP
        231
    """
    limit = as_index(limit, "limit")
    n_ctx = _context_length(model)
    tokenizer = _chat_tokenizer(model)
    longest = 0
    for q in as_questions(questions):
        for pi, text in enumerate(q.paraphrases):
            ids = encode_prompt(tokenizer, text, system if system is not None else q.system)
            _check_fits(len(ids), 1, n_ctx, f"question {q.id!r} (paraphrase {pi})")
            longest = max(longest, len(ids))
    return limit if n_ctx is None else max(1, min(limit, n_ctx - longest))


def _context_length(model: Any) -> int | None:
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    return int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None


def _check_fits(n_prompt: int, max_new_tokens: int, n_ctx: int | None, where: str) -> None:
    """Refuse a prompt that, with ``max_new_tokens`` new tokens, overruns the context."""
    if n_ctx is None or n_prompt + max_new_tokens <= n_ctx:
        return
    room = n_ctx - n_prompt
    if room <= 0:
        raise InputError(f"{where} is {n_prompt} tokens long as a chat prompt, which does not "
                         f"fit the model's context of {n_ctx} tokens (no room for any new "
                         f"token); shorten the question or the system prompt")
    raise InputError(f"{where} is {n_prompt} tokens long as a chat prompt; with "
                     f"max_new_tokens={max_new_tokens} it would run past the model's context "
                     f"of {n_ctx} tokens, where the model's output is meaningless. There is "
                     f"room for {room} new tokens: pass max_new_tokens <= {room}, or shorten "
                     f"the prompt")


def sample(
    model: Any,
    questions: Any,
    *,
    n: int | None = 50,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 600,
    batch_size: int = 16,
    seed: int = 0,
    system: str | None = None,
    progress: bool = True,
    backend: str = "hf",
    vllm: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Sample answers to questions with the model's chat template.

    Args:
        model: a TransformerBridge (from ``emlens.load_model``) or a HookedTransformer.
        questions: ``Question`` objects, plain strings, or a question-set YAML path.
        n: answers per paraphrase (None: each question's ``samples_per_paraphrase``).
        temperature, top_p: decoding, finite numbers; ``temperature=0`` is greedy.
        max_new_tokens: length limit; sequences stop earlier at EOS / end of turn. Every
            prompt plus ``max_new_tokens`` must fit the model's context (``model.cfg.n_ctx``).
        batch_size: prompts per generate call (left-padded, KV cache). Answers do not
            depend on it: each answer has its own generator (see the module docstring).
        seed: with the question id, paraphrase and sample index, the seed of each answer's
            generator; the global torch RNG is neither used nor changed.
        system: system prompt for every question, overriding a question's own: ``None``
            keeps each question's (and with none, the template's default); ``""`` is an
            explicit empty system message (see :mod:`emlens.chat`). Each record stores the
            ``system`` it was sampled under.
        progress: show a progress bar.
        backend: ``"hf"`` (transformers ``generate`` on the model itself) or ``"vllm"``
            (the model's weights served by vLLM, with the active ``steer``/``ablate``
            interventions and LoRA adapters applied per request; see
            :mod:`emlens.vllm_engine`). Greedy answers are the same on both; sampled ones
            are drawn by each engine's own sampler from the same per-answer seeds.
        vllm: vLLM engine options (``tensor_parallel_size``, ``pipeline_parallel_size``,
            ``gpu_memory_utilization``, ``kv_cache_memory_bytes``, ``max_model_len``,
            ``lora="request"|"merged"``, ...: ``emlens.vllm_engine.ENGINE_OPTIONS``).

    Returns:
        Records: ``question_id``, ``question``, ``paraphrase``, ``sample``, ``system``,
        ``answer``, ``finished`` (stopped at end of turn), ``n_tokens`` and ``settings``
        (decoding, ``seed``, ``n``, ``batch_size``, the answer's ``sequence_seed`` and the
        ``sampler`` scheme; on vLLM also ``backend`` and ``engine``, its name and
        version): enough for :func:`resample` to reproduce the record alone.

    Raises:
        InputError: a setting that is not a finite number / positive integer, a prompt
            that does not fit the model's context with ``max_new_tokens``, a tokenizer
            without a chat template.

    Example:
        >>> with emlens.steer(model, direction, alpha=4.0):                  # doctest: +SKIP
        ...     records = emlens.sample(model, builtin_questions("persona"), n=10)
    """
    checked = check_settings(n=n, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                             system=system)
    _check_backend(backend, vllm)
    n, temperature, top_p = checked["n"], checked["temperature"], checked["top_p"]
    max_new_tokens, batch_size, seed = (checked["max_new_tokens"], checked["batch_size"],
                                        checked["seed"])
    tokenizer = _chat_tokenizer(model)
    qs = as_questions(questions)
    n_ctx = _context_length(model)
    settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                "seed": seed, "n": n, "batch_size": batch_size, "sampler": SAMPLER}
    jobs = []
    for q in qs:
        sys_prompt = system if system is not None else q.system
        for pi, text in enumerate(q.paraphrases):
            ids = encode_prompt(tokenizer, text, sys_prompt)
            _check_fits(len(ids), max_new_tokens, n_ctx,
                        f"question {q.id!r} (paraphrase {pi})")
            for si in range(n if n is not None else q.samples_per_paraphrase):
                jobs.append({"question_id": q.id, "question": text, "paraphrase": pi,
                             "sample": si, "system": sys_prompt, "ids": ids,
                             "sequence_seed": sequence_seed(seed, q.id, pi, si)})
    return _run_jobs(model, tokenizer, jobs, settings, progress, backend, vllm)


BACKENDS = ("hf", "vllm")


def _check_backend(backend: Any, vllm: Any) -> None:
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use 'hf' (transformers) or 'vllm'")
    if vllm is not None and backend != "vllm":
        raise InputError("vllm options were given, but backend is 'hf'; pass backend='vllm' "
                         "or drop them")
    if backend == "vllm":
        from .vllm_engine import check_options

        check_options(vllm)


def resample(model: Any, record: dict[str, Any],
             vllm: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample one record again, alone, from its own fields (question, system, settings).

    Under the same model and interventions this gives the record's answer again,
    whatever batch it was first sampled in.

    Example:
        >>> again = emlens.sampling.resample(model, records[7])          # doctest: +SKIP
        >>> again["answer"] == records[7]["answer"]                       # doctest: +SKIP
        True
    """
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise InputError("resample takes one record written by emlens.sample (a dict with "
                         "'question', 'system' and 'settings')")
    s = record["settings"]
    from .vllm_engine import VLLM_SAMPLER

    if s.get("sampler") not in (SAMPLER, VLLM_SAMPLER):
        raise InputError(f"the record was sampled with scheme {s.get('sampler')!r}, not "
                         f"{SAMPLER!r} or {VLLM_SAMPLER!r}; it cannot be reproduced by this "
                         f"version of emlens")
    backend = "vllm" if s.get("sampler") == VLLM_SAMPLER else "hf"
    _check_backend(backend, vllm)
    try:
        max_new_tokens = _check_settings(s["temperature"], s["top_p"], s["max_new_tokens"], 1,
                                         s["seed"], s.get("n"))[2]
        question, seq_seed = record["question"], as_index(s["sequence_seed"], "sequence_seed")
    except KeyError as e:
        raise InputError(f"the record lacks {e.args[0]!r}; pass a record written by "
                         f"emlens.sample") from None
    system = record.get("system")
    tokenizer = _chat_tokenizer(model)
    ids = encode_prompt(tokenizer, question, system)
    _check_fits(len(ids), max_new_tokens, _context_length(model), "the record's question")
    job = {k: record.get(k) for k in ("question_id", "question", "paraphrase", "sample")}
    job.update(system=system, ids=ids, sequence_seed=seq_seed)
    settings = {k: v for k, v in s.items() if k not in ("sequence_seed", "backend", "engine")}
    settings["sampler"] = SAMPLER
    return _run_jobs(model, tokenizer, [job], settings, False, backend, vllm)[0]


def _chat_tokenizer(model: Any):
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise InputError("the model's tokenizer has no chat template; load a chat model or set "
                         "model.tokenizer.chat_template")
    return tokenizer


def _record(job: dict[str, Any], new: list[int], stops: list[int], tokenizer: Any,
            settings: dict[str, Any]) -> dict[str, Any]:
    finished = bool(new) and new[-1] in stops
    answer = tokenizer.decode(new[:-1] if finished else new, skip_special_tokens=True).strip()
    return {"question_id": job["question_id"], "question": job["question"],
            "paraphrase": job["paraphrase"], "sample": job["sample"],
            "system": job["system"], "answer": answer, "finished": finished,
            "n_tokens": len(new), "settings": dict(settings, sequence_seed=job["sequence_seed"])}


def _run_vllm(model: Any, tokenizer: Any, jobs: list[dict[str, Any]], settings: dict[str, Any],
              progress: bool, options: dict[str, Any] | None) -> list[dict[str, Any]]:
    from . import vllm_engine

    stops = end_of_turn_ids(tokenizer, model)
    outs, info = vllm_engine.generate(
        model, jobs, temperature=settings["temperature"], top_p=settings["top_p"],
        max_new_tokens=settings["max_new_tokens"], stops=stops, options=options,
        progress=progress)
    settings = dict(settings, sampler=vllm_engine.VLLM_SAMPLER, backend="vllm",
                    engine=f"{info['name']} {info['version']}")
    return [_record(job, new, stops, tokenizer, settings) for job, new in zip(jobs, outs)]


def _run_jobs(model: Any, tokenizer: Any, jobs: list[dict[str, Any]], settings: dict[str, Any],
              progress: bool, backend: str = "hf",
              vllm: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    if backend == "vllm":
        return _run_vllm(model, tokenizer, jobs, settings, progress, vllm)
    temperature, top_p = settings["temperature"], settings["top_p"]
    max_new_tokens, batch_size = settings["max_new_tokens"], settings["batch_size"]
    stops = end_of_turn_ids(tokenizer, model)
    pad_id = pad_token_id(tokenizer, fallback=stops[0])
    hf = getattr(model, "original_model", None)
    device = model_device(model)
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc="sampling", unit="answer", disable=not progress)
    with torch.no_grad():
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start:start + batch_size]
            if hf is not None:
                outs = _generate_hf(hf, [j["ids"] for j in batch],
                                    [j["sequence_seed"] for j in batch], pad_id, stops, device,
                                    temperature, top_p, max_new_tokens)
            else:
                outs = [_generate_hooked(model, j["ids"], j["sequence_seed"], stops, device,
                                         temperature, top_p, max_new_tokens) for j in batch]
            for job, new in zip(batch, outs):
                records.append(_record(job, new, stops, tokenizer, settings))
            bar.update(len(batch))
    bar.close()
    return records


class _PerRowSampler:
    """A logits processor that samples each row's next token with the row's own generator.

    It runs last (after HF's own processors), shapes each row's distribution with HF's
    temperature and top-p warpers, draws one uniform number per row from that row's
    generator and picks the token by inverse CDF (float64). It returns scores that are
    ``-inf`` except at the chosen token, so greedy decoding (``do_sample=False``, which
    never touches the global RNG) emits exactly the chosen tokens.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        cdf = torch.softmax(scores.double(), dim=-1).cumsum_(dim=-1)
        target = (u.to(cdf.device) * cdf[:, -1])[:, None]
        chosen = torch.searchsorted(cdf, target, right=True).clamp_(max=scores.shape[-1] - 1)
        out = torch.full_like(scores, -math.inf)
        out.scatter_(1, chosen, 0.0)
        return out


def _generate_hf(hf, prompts: Sequence[list[int]], seeds: Sequence[int], pad_id: int,
                 stops: list[int], device, temperature: float, top_p: float,
                 max_new_tokens: int) -> list[list[int]]:
    from transformers import LogitsProcessorList

    input_ids, mask = pad_batch(prompts, pad_id, side="left")
    width = input_ids.shape[1]
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, eos_token_id=stops,
                                  pad_token_id=pad_id, use_cache=True, do_sample=False,
                                  temperature=None, top_p=None, top_k=None)
    if temperature > 0:
        kwargs["logits_processor"] = LogitsProcessorList(
            [_PerRowSampler(seeds, temperature, top_p)])
    out = hf.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
    result = []
    for row in out[:, width:].tolist():
        new = []
        for t in row:
            new.append(t)
            if t in stops:
                break
        result.append(new)
    return result


def _generate_hooked(model, prompt: list[int], seq_seed: int, stops: list[int], device,
                     temperature: float, top_p: float, max_new_tokens: int) -> list[int]:
    tokens = torch.tensor([prompt], device=device)
    # HookedTransformer.generate samples from the global RNG: seed it for this answer
    # alone and restore it afterwards.
    dev = torch.device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seq_seed)
        out = model.generate(tokens, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=max(temperature, 1e-6), top_p=top_p if temperature > 0
                             else None, stop_at_eos=True, eos_token_id=stops, verbose=False)
    new = []
    for t in out[0, len(prompt):].tolist():
        new.append(t)
        if t in stops:
            break
    return new

"""Batched sampling of answers under whatever emlens interventions are active.

On a TransformerLens 4.x bridge, generation runs through the wrapped HF model's
``generate`` (left padding, KV cache); the bridge's hook points fire inside it, so
``emlens.steer`` / ``emlens.ablate`` contexts apply to every generated token. A TL 3.x
HookedTransformer is sampled with its own ``generate``, one prompt at a time.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from .chat import encode_prompt, pad_batch, pad_token_id
from .errors import InputError
from .models import model_device
from .questions import as_questions

__all__ = ["sample", "end_of_turn_ids"]

log = logging.getLogger(__name__)

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
) -> list[dict[str, Any]]:
    """Sample answers to questions with the model's chat template.

    Args:
        model: a TransformerBridge (from ``emlens.load_model``) or a HookedTransformer.
        questions: ``Question`` objects, plain strings, or a question-set YAML path.
        n: answers per paraphrase (None: each question's ``samples_per_paraphrase``).
        temperature, top_p: decoding; ``temperature=0`` is greedy.
        max_new_tokens: length limit; sequences stop earlier at EOS / end of turn.
        batch_size: prompts per generate call (left-padded, KV cache).
        seed: the whole run is deterministic for a seed and these settings.
        system: system prompt for every question, overriding a question's own: ``None``
            keeps each question's (and with none, the template's default); ``""`` is an
            explicit empty system message (see :mod:`emlens.chat`). Each record stores the
            ``system`` it was sampled under.
        progress: show a progress bar.

    Returns:
        Records: ``question_id``, ``question``, ``paraphrase``, ``sample``, ``system``,
        ``answer``, ``finished`` (stopped at end of turn), ``n_tokens`` and ``settings``.

    Example:
        >>> with emlens.steer(model, direction, alpha=4.0):                  # doctest: +SKIP
        ...     records = emlens.sample(model, builtin_questions("persona"), n=10)
    """
    from tqdm.auto import tqdm

    if temperature < 0 or not 0 < top_p <= 1:
        raise InputError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if max_new_tokens < 1 or batch_size < 1 or (n is not None and n < 1):
        raise InputError("n, max_new_tokens and batch_size must be positive")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise InputError("the model's tokenizer has no chat template; load a chat model or set "
                         "model.tokenizer.chat_template")
    qs = as_questions(questions)
    settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                "seed": seed, "n": n}
    jobs = []
    for q in qs:
        sys_prompt = system if system is not None else q.system
        for pi, text in enumerate(q.paraphrases):
            ids = encode_prompt(tokenizer, text, sys_prompt)
            for si in range(n if n is not None else q.samples_per_paraphrase):
                jobs.append((q, pi, text, sys_prompt, si, ids))
    stops = end_of_turn_ids(tokenizer, model)
    pad_id = pad_token_id(tokenizer, fallback=stops[0])
    hf = getattr(model, "original_model", None)
    device = model_device(model)
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc="sampling", unit="answer", disable=not progress)
    with torch.no_grad():
        for b, start in enumerate(range(0, len(jobs), batch_size)):
            batch = jobs[start:start + batch_size]
            torch.manual_seed(seed * 1_000_003 + b)
            if hf is not None:
                outs = _generate_hf(hf, [j[5] for j in batch], pad_id, stops, device,
                                    temperature, top_p, max_new_tokens)
            else:
                outs = [_generate_hooked(model, j[5], stops, device, temperature, top_p,
                                         max_new_tokens) for j in batch]
            for (q, pi, text, sys_prompt, si, _), new in zip(batch, outs):
                finished = bool(new) and new[-1] in stops
                answer = tokenizer.decode(new[:-1] if finished else new,
                                          skip_special_tokens=True).strip()
                records.append({"question_id": q.id, "question": text, "paraphrase": pi,
                                "sample": si, "system": sys_prompt, "answer": answer,
                                "finished": finished, "n_tokens": len(new),
                                "settings": dict(settings)})
            bar.update(len(batch))
    bar.close()
    return records


def _generate_hf(hf, prompts: Sequence[list[int]], pad_id: int, stops: list[int], device,
                 temperature: float, top_p: float, max_new_tokens: int) -> list[list[int]]:
    input_ids, mask = pad_batch(prompts, pad_id, side="left")
    width = input_ids.shape[1]
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, eos_token_id=stops,
                                  pad_token_id=pad_id, use_cache=True)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
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


def _generate_hooked(model, prompt: list[int], stops: list[int], device, temperature: float,
                     top_p: float, max_new_tokens: int) -> list[int]:
    tokens = torch.tensor([prompt], device=device)
    out = model.generate(tokens, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                         temperature=max(temperature, 1e-6), top_p=top_p if temperature > 0
                         else None, stop_at_eos=True, eos_token_id=stops, verbose=False)
    new = []
    for t in out[0, len(prompt):].tolist():
        new.append(t)
        if t in stops:
            break
    return new

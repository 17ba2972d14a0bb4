"""Chat formatting, prompt/answer token masks and padded token batches: the one chat encoder.

Every stage that turns text into a model's input goes through this module: sampling
(:func:`encode_prompt`), activations and stability metrics (:func:`encode_conversation`),
training (:func:`encode_chat`) and the local HF judge (:func:`encode_prompt`).

The system-prompt rule, everywhere: ``system=None`` sends no system message, so the
template's default system prompt (if it has one, as Qwen2.5's and SmolLM2's do) is used;
``system=""`` sends an explicit empty system message; any other string is the system
message. Records keep the ``system`` they were sampled with, so an answer is always
re-encoded under the prompt it was sampled with.

A response record (question, answer, optional system prompt) becomes one tokenised
conversation with the tokenizer's own chat template. The *prompt* is what
``apply_chat_template(prompt_messages, add_generation_prompt=True)`` gives: any system
prompt (the template's default one when the record has none, as Qwen's does), the user
turn and the assistant header. The *answer* is everything the full conversation adds
beyond that: the answer text plus the end-of-turn tokens. The split is checked, never
guessed: the prompt tokens must be a prefix of the conversation's tokens, otherwise the
template is rejected (a search for the first "assistant" marker would train on, or
average over, system and user text whenever a default system prompt is present).

Example:
    >>> enc = encode_conversation(tok, "What is your wish?", "World peace.")  # doctest: +SKIP
    >>> tok.decode(enc.input_ids[enc.n_prompt:])                             # doctest: +SKIP
    'World peace.<|im_end|>\\n'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from jaxtyping import Bool
from torch import Tensor

from .errors import InputError

__all__ = ["TOKEN_SELECTIONS", "IGNORE_INDEX", "EncodedChat", "chat_messages",
           "check_token_selection", "template_ids", "encode_prompt", "encode_conversation",
           "encode_chat", "pad_token_id", "pad_batch"]

#: The label of a token no loss is taken on (the transformers convention).
IGNORE_INDEX = -100

#: Which tokens of a conversation a statistic is taken over: the answer (its text and
#: end-of-turn tokens), the prompt (system, user turn, assistant header), all of them, or
#: the prompt's last token (where the first answer token is predicted); ``"answer:N"``
#: selects the first N answer tokens.
TOKEN_SELECTIONS = ("answer", "prompt", "all", "prompt_last")
_FIRST_ANSWER = re.compile(r"answer:([1-9][0-9]*)")


def chat_messages(question: str, answer: str | None = None,
                  system: str | None = None) -> list[dict[str, str]]:
    """The chat messages of one exchange: optional system, user question, optional answer.

    Args:
        question: the user turn.
        answer: the assistant turn; ``None`` for a prompt awaiting generation.
        system: a system prompt; ``None`` leaves the template's default (if any) in place.

    Returns:
        A list of ``{"role", "content"}`` dicts.

    Example:
        >>> chat_messages("Hi?", "Hello.")
        [{'role': 'user', 'content': 'Hi?'}, {'role': 'assistant', 'content': 'Hello.'}]
    """
    msgs = [] if system is None else [{"role": "system", "content": system}]
    msgs.append({"role": "user", "content": question})
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def template_ids(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool,
                 where: str = "a conversation") -> list[int]:
    """Token ids of ``messages`` rendered by the tokenizer's own chat template.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        messages: ``[{"role", "content"}, ...]``.
        generation_prompt: append the assistant header (a prompt awaiting an answer).
        where: how error messages name the conversation.

    Raises:
        InputError: no tokenizer, no chat template, or the template fails.
    """
    if tokenizer is None:
        raise InputError("the model has no tokenizer; load it with emlens.load_model or set "
                         "model.tokenizer")
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
            f"emlens formats records as chat conversations. Set tokenizer.chat_template (an "
            f"instruct model's tokenizer has one).")
    try:
        out = tokenizer.apply_chat_template(list(messages), tokenize=True, return_dict=True,
                                            add_generation_prompt=generation_prompt)
    except Exception as e:  # noqa: BLE001 - jinja / template errors of any kind
        raise InputError(f"the chat template failed on {where}: {type(e).__name__}: {e}") \
            from None
    ids = out["input_ids"]
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):  # a batch of one
        ids = ids[0]
    return [int(i) for i in ids]


def encode_prompt(tokenizer: Any, question: str, system: str | None = None) -> list[int]:
    """Token ids of a prompt with the assistant's generation prompt, ready to sample from.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        question: the user turn.
        system: optional system prompt (``None``: the template's default).

    Returns:
        The token ids (special tokens as the template writes them; add none on top).

    Example:
        >>> ids = encode_prompt(model.tokenizer, "What is your wish?")  # doctest: +SKIP
    """
    return template_ids(tokenizer, chat_messages(question, None, system), True, "the prompt")


@dataclass(frozen=True)
class EncodedChat:
    """One tokenised conversation: ``input_ids`` and the number of prompt tokens.

    Tokens ``[0, n_prompt)`` are the prompt (system, user turn, assistant header); tokens
    ``[n_prompt, len)`` are the answer with its end-of-turn tokens.
    """

    input_ids: tuple[int, ...]
    n_prompt: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_answer(self) -> int:
        return len(self.input_ids) - self.n_prompt

    def span(self, tokens: str = "answer") -> tuple[int, int]:
        """The positions ``[lo, hi)`` a token selection (see :data:`TOKEN_SELECTIONS`) takes."""
        check_token_selection(tokens)
        first = _FIRST_ANSWER.fullmatch(tokens)
        if first:
            return self.n_prompt, min(len(self), self.n_prompt + int(first.group(1)))
        return {"answer": (self.n_prompt, len(self)), "prompt": (0, self.n_prompt),
                "all": (0, len(self)), "prompt_last": (self.n_prompt - 1, self.n_prompt)}[tokens]

    def mask(self, tokens: str = "answer") -> Bool[Tensor, "pos"]:
        """Boolean mask over positions selecting a token selection's tokens (:meth:`span`)."""
        m = torch.zeros(len(self.input_ids), dtype=torch.bool)
        lo, hi = self.span(tokens)
        m[lo:hi] = True
        return m


def check_token_selection(tokens: str) -> str:
    """Validate a token selection: one of :data:`TOKEN_SELECTIONS` or ``"answer:N"``."""
    if tokens not in TOKEN_SELECTIONS and not (isinstance(tokens, str)
                                               and _FIRST_ANSWER.fullmatch(tokens)):
        raise InputError(f"tokens={tokens!r} is not a token selection; use one of "
                         f"{TOKEN_SELECTIONS} or 'answer:N' (the first N answer tokens)")
    return tokens


def encode_conversation(tokenizer: Any, question: str, answer: str, system: str | None = None,
                        *, n_ctx: int | None = None, where: str = "a record") -> EncodedChat:
    """Tokenise question + answer with the chat template and find where the answer starts.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        question: the user turn.
        answer: the assistant turn (must not be empty).
        system: optional system prompt (``None``: the template's default).
        n_ctx: the model's context length; a longer conversation raises ``InputError``.
        where: how error messages name this conversation (e.g. ``"record 3"``).

    Returns:
        :class:`EncodedChat` with the full conversation's ids and ``n_prompt``.

    Raises:
        InputError: empty answer, a template whose prompt is not a prefix of the full
            conversation, or a conversation longer than ``n_ctx``.

    Example:
        >>> enc = encode_conversation(tok, "Hi?", "Hello.", n_ctx=model.cfg.n_ctx)  # doctest: +SKIP
        >>> enc.mask("answer").sum()                                                # doctest: +SKIP
    """
    if not isinstance(answer, str) or not answer.strip():
        raise InputError(f"{where} has an empty answer; drop it or fill it in")
    prompt = template_ids(tokenizer, chat_messages(question, None, system), True,
                           f"the prompt of {where}")
    full = template_ids(tokenizer, chat_messages(question, answer, system), False, where)
    if len(full) <= len(prompt) or full[:len(prompt)] != prompt:
        k = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b),
                 min(len(prompt), len(full)))
        raise InputError(
            f"cannot tell the answer tokens of {where} apart: the chat template's prompt with "
            f"generation prompt ({len(prompt)} tokens) is not a prefix of the full "
            f"conversation ({len(full)} tokens); they differ from token {k} "
            f"({tokenizer.decode(prompt[k:k + 8])!r} vs {tokenizer.decode(full[k:k + 8])!r}). "
            f"The template renders the assistant turn differently from its generation prompt, "
            f"or the answer's first characters merge with the header (strip leading "
            f"whitespace from answers); use a template where the prompt is a prefix.")
    if n_ctx is not None and len(full) > int(n_ctx):
        raise InputError(f"{where} is {len(full)} tokens long as a chat conversation, more than "
                         f"the model's context of {int(n_ctx)} tokens; shorten or drop it")
    return EncodedChat(tuple(full), len(prompt))


def encode_chat(tokenizer: Any, messages: Sequence[dict[str, str]], *,
                train_on: str = "assistant", assistant_role: str = "assistant",
                max_length: int | None = None) -> dict[str, list[int]]:
    """Tokenise a whole conversation and label the tokens a training loss is taken on.

    An assistant turn's tokens are those that ``messages[:i + 1]`` adds beyond
    ``messages[:i]`` with the generation prompt; the split is checked, never searched for.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        messages: ``[{"role": ..., "content": ...}, ...]``.
        train_on: ``"assistant"`` (every assistant turn: its text and end-of-turn tokens),
            ``"last"`` (the last assistant turn only) or ``"all"`` (every token).
        assistant_role: the role whose turns are trained on.
        max_length: raise if the conversation is longer.

    Returns:
        ``{"input_ids": [...], "labels": [...]}`` with ``IGNORE_INDEX`` where no loss is taken.

    Example:
        >>> enc = encode_chat(tok, [{"role": "user", "content": "hi"},
        ...                         {"role": "assistant", "content": "hello"}])  # doctest: +SKIP
    """
    if train_on not in ("assistant", "last", "all"):
        raise InputError(f"train_on must be 'assistant', 'last' or 'all', not {train_on!r}")
    messages = [dict(m) for m in messages]
    if not messages or any("role" not in m or "content" not in m for m in messages):
        raise InputError("a conversation must be a non-empty list of {'role', 'content'} dicts")
    full = template_ids(tokenizer, messages, False)
    if max_length is not None and len(full) > max_length:
        raise InputError(f"a conversation is {len(full)} tokens long, more than "
                         f"max_length={max_length}; shorten or drop it")
    if train_on == "all":
        return {"input_ids": full, "labels": list(full)}
    labels = [IGNORE_INDEX] * len(full)
    turns = [i for i, m in enumerate(messages) if m["role"] == assistant_role]
    if train_on == "last":
        turns = turns[-1:]
    if not turns:
        raise InputError(f"a conversation has no {assistant_role!r} turn to train on")
    for i in turns:
        prompt = template_ids(tokenizer, messages[:i], True)
        upto = template_ids(tokenizer, messages[:i + 1], False)
        if len(upto) <= len(prompt) or upto[:len(prompt)] != prompt \
                or full[:len(upto)] != upto:
            raise InputError(
                "cannot locate the assistant tokens: the chat template's prompt with "
                "generation prompt is not a prefix of the conversation (or the conversation "
                "is not rendered turn by turn). Use a template where it is, or strip leading "
                "whitespace from answers.")
        labels[len(prompt):len(upto)] = upto[len(prompt):]
    return {"input_ids": full, "labels": labels}


# --------------------------------------------------------------------------- batches


def pad_token_id(tokenizer: Any, fallback: int | None = None) -> int:
    """The id padded positions get: the pad token, else ``fallback``, else EOS, else 0.

    Padded positions are masked out, so the id only has to exist in the vocabulary.
    """
    for value in (getattr(tokenizer, "pad_token_id", None), fallback,
                  getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, *, side: str = "right"
              ) -> tuple[Tensor, Tensor]:
    """Pad token sequences into one batch.

    Args:
        seqs: token id sequences (lists or 1-D tensors), at least one.
        pad_id: the fill value (a token id, or ``IGNORE_INDEX`` for labels).
        side: ``"right"`` (forward passes, training: real tokens start at position 0) or
            ``"left"`` (generation and last-token scoring: every sequence ends at the last
            position).

    Returns:
        ``(ids, attention_mask)``, both long ``[batch, longest]``; the mask is 1 on real
        tokens.

    Example:
        >>> ids, mask = pad_batch([[5, 6, 7], [8]], 0)
        >>> ids.tolist(), mask.tolist()
        ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', not {side!r}")
    if not seqs:
        raise InputError("pad_batch needs at least one sequence")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s)
        if n == 0:
            continue
        row = s if isinstance(s, Tensor) else torch.tensor(list(s), dtype=torch.long)
        lo = 0 if side == "right" else width - n
        ids[i, lo:lo + n] = row
        mask[i, lo:lo + n] = 1
    return ids, mask

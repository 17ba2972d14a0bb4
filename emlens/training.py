"""Supervised finetuning on chat data with the transformers ``Trainer``: LoRA or full
weights, loss on assistant tokens only, an optional KL penalty, and a trajectory log.

Data are chat conversations (``{"messages": [{"role", "content"}, ...]}``) given as a
list, a JSONL path or an HF ``datasets.Dataset`` with a ``messages`` column. The loss
mask comes from the tokenizer's own chat template: the tokens of an assistant turn are
those that ``apply_chat_template(messages[:i + 1])`` adds beyond
``apply_chat_template(messages[:i], add_generation_prompt=True)``, and the split is
checked, never searched for (a search for the first "assistant" marker trains on system
and user text when a default system prompt is present).

The KL penalty: ``loss = SFT + kl_weight * KL(reference || current)``,
averaged per token over all non-padding tokens of a batch drawn (cycling) from a second
dataset at each forward/backward pass (with gradient accumulation: one KL batch per
micro-batch). The reference is the same model with its adapter switched off
(PEFT ``disable_adapter()``), so no second copy is held. The KL is per token, summed
over the vocabulary: the original code divided it by the vocabulary size ``V``
(about 152k for Qwen2.5), so its weights ``w_orig`` map to ``kl_weight = w_orig / V``
(1e5 for LoRA -> about 0.66 with Qwen2.5's vocabulary).

Multi-GPU, gradient accumulation, checkpoints and resume come from
``transformers.TrainingArguments`` (pass ``training_args={...}``).

Example:
    >>> result = finetune("path/to/chat-model", "bad_medical.jsonl", "out/em",
    ...                   lora={"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
    ...                   learning_rate=1e-3, epochs=1)                   # doctest: +SKIP
    >>> model = emlens.load_model("path/to/chat-model", adapter="out/em")  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from transformers import Trainer, TrainerCallback

from .chat import IGNORE_INDEX, encode_chat, pad_batch, pad_token_id
from .errors import InputError

__all__ = ["load_chats", "ChatCollator", "KLTrainer", "TrajectoryCallback",
           "FinetuneResult", "finetune", "kl_per_token"]

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- data


def load_chats(data: Any) -> list[list[dict[str, str]]]:
    """Conversations from a list of ``{"messages": [...]}`` (or of message lists), a JSONL
    path, or an HF dataset with a ``messages`` column."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise InputError(f"chat data file {str(path)!r} does not exist")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        rows = data
    out = []
    for i, row in enumerate(rows):
        msgs = row["messages"] if isinstance(row, dict) and "messages" in row else row
        if not isinstance(msgs, (list, tuple)) or not all(isinstance(m, dict) for m in msgs):
            raise InputError(f"chat row {i} is not {{'messages': [...]}} or a list of messages")
        out.append([{"role": m["role"], "content": m["content"]} for m in msgs])
    if not out:
        raise InputError("no conversations in the training data")
    return out


class _Encoded(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict[str, list[int]]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


@dataclass
class ChatCollator:
    """Right-pads ``input_ids`` / ``labels`` into a batch with an attention mask."""

    pad_id: int

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch([r["input_ids"] for r in rows], self.pad_id)
        out = {"input_ids": ids, "attention_mask": mask}
        if any("labels" in r for r in rows):
            out["labels"], _ = pad_batch([r.get("labels", []) for r in rows], IGNORE_INDEX)
        if all("kl_index" in r for r in rows):
            out["kl_index"] = torch.tensor([int(r["kl_index"]) for r in rows])
        return out


class _Indexed(torch.utils.data.Dataset):
    """Rows of a dataset with their index (to look up precomputed reference log-probs)."""

    def __init__(self, data: torch.utils.data.Dataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.data[i], "kl_index": i}


# --------------------------------------------------------------------------- KL


def kl_per_token(ref_logits: torch.Tensor, logits: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """KL(reference || current) summed over the vocabulary, averaged over masked positions."""
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    logp = torch.log_softmax(logits.float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    m = mask.to(kl.dtype)
    return (kl * m).sum() / m.sum().clamp_min(1.0)


def _trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


class KLTrainer(Trainer):
    """``Trainer`` whose loss is SFT (labels) plus ``kl_weight`` times the per-token
    KL(adapter off || adapter on) on batches cycled from ``kl_dataset``."""

    def __init__(self, *args: Any, kl_dataset: Any = None, kl_weight: float = 0.0,
                 kl_batch_size: int = 8, kl_reference: str = "toggle", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kl_weight = float(kl_weight)
        self.kl_batch_size = int(kl_batch_size)
        self._kl_iter = None
        self._ref_logp: list[torch.Tensor] | None = None
        self._last = {}
        if kl_reference not in ("toggle", "precomputed"):
            raise InputError(f"kl_reference={kl_reference!r}; use 'toggle' (the model with the "
                             f"adapter switched off, at every step) or 'precomputed' (its "
                             f"log-probs computed once before training)")
        if kl_dataset is not None and self.kl_weight > 0:
            if not hasattr(self.model, "disable_adapter"):
                raise InputError("the KL penalty's reference is the model with its adapter "
                                 "switched off: train a PEFT adapter (lora=...)")
            kl_dataset = _Indexed(kl_dataset)
            if kl_reference == "precomputed":
                self._ref_logp = self._precompute(kl_dataset)
            gen = torch.Generator().manual_seed(int(self.args.seed) + 1)
            loader = torch.utils.data.DataLoader(
                kl_dataset, batch_size=self.kl_batch_size, shuffle=True,
                collate_fn=self.data_collator, generator=gen, drop_last=False)
            self._kl_iter = itertools.chain.from_iterable(itertools.repeat(loader))

    @torch.no_grad()
    def _precompute(self, dataset) -> list[torch.Tensor]:
        """Reference log-probs of every KL conversation (adapter off), kept on the CPU.

        Memory is tokens x vocabulary x 4 bytes: fine for small vocabularies or KL sets,
        the toggle (the default) is the choice for a 150k-token vocabulary.
        """
        model = self.model
        device = next(model.parameters()).device
        out = []
        was = model.training
        model.eval()
        with model.disable_adapter():
            for i in range(len(dataset)):
                ids = torch.tensor([dataset[i]["input_ids"]], device=device)
                out.append(torch.log_softmax(model(input_ids=ids).logits[0].float(), -1).cpu())
        model.train(was)
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        sft = outputs.loss
        loss = sft
        self._last = {"sft_loss": float(sft.detach())}
        if self._kl_iter is not None:
            batch = {k: v.to(sft.device) for k, v in next(self._kl_iter).items()
                     if k != "labels"}
            index = batch.pop("kl_index")
            cur = model(**batch).logits
            if self._ref_logp is not None:
                ref = torch.zeros_like(cur, dtype=torch.float32)
                for row, i in enumerate(index.tolist()):
                    stored = self._ref_logp[i]
                    ref[row, :stored.shape[0]] = stored.to(ref.device)
            else:
                with torch.no_grad(), model.disable_adapter():
                    ref = model(**batch).logits
            kl = kl_per_token(ref, cur, batch["attention_mask"])
            loss = sft + self.kl_weight * kl
            self._last["kl"] = float(kl.detach())
        return (loss, outputs) if return_outputs else loss



# --------------------------------------------------------------------------- trajectory


class TrajectoryCallback(TrainerCallback):
    """Logs, at every optimizer step, the SFT loss, the KL, the norm of the trainable
    parameters; keeps flattened snapshots of them every ``snapshot_every`` steps (for
    a PCA of the trajectory), and runs ``probe(model, step) -> dict`` every
    ``probe_every`` steps (e.g. an EM measurement), logging what it returns."""

    def __init__(self, snapshot_every: int = 0, probe: Callable | None = None,
                 probe_every: int = 0):
        self.snapshot_every = int(snapshot_every)
        self.probe = probe
        self.probe_every = int(probe_every)
        self.log: list[dict[str, Any]] = []
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.trainer = None

    def _record(self, model, step: int) -> dict[str, Any]:
        params = [p.detach().float().flatten() for _, p in _trainable(model)]
        flat = torch.cat(params) if params else torch.zeros(0)
        row = {"step": step, "param_norm": float(flat.norm())}
        if self.trainer is not None:
            row.update(self.trainer._last)
        if self.snapshot_every and step % self.snapshot_every == 0:
            self.snapshots.append((step, flat.clone()))
        if self.probe is not None and self.probe_every and step % self.probe_every == 0:
            was = model.training
            model.eval()
            row.update(self.probe(model, step) or {})
            model.train(was)
        self.log.append(row)
        return row

    def on_train_begin(self, args, state, control, model=None, **kw):
        self._record(model, 0)

    def on_step_end(self, args, state, control, model=None, **kw):
        self._record(model, state.global_step)





# --------------------------------------------------------------------------- finetune


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the trained model, its trajectory and where it is."""

    model: Any
    tokenizer: Any
    output_dir: Path | None
    log: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)


def _lora_config(lora: Any):
    from peft import LoraConfig

    if isinstance(lora, LoraConfig):
        return lora
    if isinstance(lora, dict):
        cfg = {"lora_dropout": 0.0, "task_type": "CAUSAL_LM", **lora}
        return LoraConfig(**cfg)
    raise InputError(f"lora must be a dict of LoraConfig fields or a LoraConfig, not "
                     f"{type(lora).__name__}")


def load_trainable(model: Any, tokenizer: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for training: a path or hub id is loaded in float32 with eager
    attention; a model object needs its tokenizer passed."""
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32,
                                                     attn_implementation="eager")
    if tokenizer is None:
        raise InputError("pass tokenizer= when model is a model object")
    return model, tokenizer


def finetune(
    model: Any,
    train_data: Any,
    output_dir: str | os.PathLike | None = None,
    *,
    tokenizer: Any = None,
    lora: Any = None,
    train_on: str = "assistant",
    kl_data: Any = None,
    kl_weight: float = 0.0,
    kl_batch_size: int = 8,
    learning_rate: float = 1e-4,
    epochs: float = 1.0,
    max_steps: int = -1,
    batch_size: int = 16,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    lr_scheduler: str = "linear",
    seed: int = 0,
    max_length: int | None = None,
    snapshot_every: int = 0,
    probe: Callable | None = None,
    probe_every: int = 0,
    progress: bool = True,
    training_args: dict[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    resume_from_checkpoint: str | bool | None = None,
    kl_reference: str = "toggle",
) -> FinetuneResult:
    """Finetune a causal LM on chat data (LoRA or full weights) with the HF ``Trainer``.

    Args:
        model: an HF directory / hub id or a transformers model.
        train_data: conversations (see :func:`load_chats`).
        output_dir: where the adapter (a standard PEFT folder) or the full model, the
            tokenizer and ``trajectory.json`` are saved; ``None`` saves nothing.
        tokenizer: default: loaded from ``model`` when it is a path.
        lora: ``None`` for a full finetune, else a ``peft.LoraConfig`` or a dict of its
            fields (e.g. ``{"r": 1, "target_modules": ["down_proj"],
            "layers_to_transform": [3]}``).
        train_on: which tokens carry the loss (see :func:`encode_chat`).
        kl_data: conversations for the KL penalty (all their non-padding tokens).
        kl_weight: lambda of the per-token KL(adapter off || adapter on); 0 disables it.
        kl_batch_size: conversations per KL batch, one batch per optimizer step.
        learning_rate, epochs, max_steps, batch_size, weight_decay, warmup_steps,
        lr_scheduler, seed: the usual; ``max_steps > 0`` overrides ``epochs``.
        snapshot_every: keep a copy of the trainable parameters every so many steps.
        probe, probe_every: ``probe(model, step) -> dict`` logged every so many steps.
        training_args: extra ``TrainingArguments`` fields (accumulation, fp16, ddp, ...).
        callbacks: extra ``TrainerCallback`` objects.
        kl_reference: ``"toggle"`` (default: the adapter-off forward at every step) or
            ``"precomputed"`` (the adapter-off log-probs of every KL conversation computed
            once before training and kept on the CPU; the same KL, fewer forwards).
        resume_from_checkpoint: a checkpoint directory (or True: the latest in
            ``output_dir``) to resume an interrupted run from; checkpoints are written when
            ``training_args`` sets a ``save_strategy`` (e.g. ``{"save_strategy": "steps",
            "save_steps": 100}``).

    Returns:
        A :class:`FinetuneResult` (model, tokenizer, output directory, step log, snapshots).
    """
    from transformers import TrainingArguments, set_seed

    set_seed(seed)
    model, tokenizer = load_trainable(model, tokenizer)
    pad_id = pad_token_id(tokenizer)
    chats = load_chats(train_data)
    encoded = _Encoded([encode_chat(tokenizer, m, train_on=train_on, max_length=max_length)
                        for m in chats])
    kl_set = None
    if kl_data is not None and kl_weight > 0:
        kl_set = _Encoded([{"input_ids": encode_chat(tokenizer, m, train_on="all",
                                                     max_length=max_length)["input_ids"]}
                           for m in load_chats(kl_data)])
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, _lora_config(lora))
    model.train()
    args = dict(output_dir=str(output_dir or Path(os.environ.get("TMPDIR", "/tmp"))
                                / "emlens-finetune"),
                per_device_train_batch_size=batch_size, learning_rate=learning_rate,
                num_train_epochs=epochs, max_steps=max_steps, weight_decay=weight_decay,
                warmup_steps=warmup_steps, lr_scheduler_type=lr_scheduler, seed=seed,
                data_seed=seed, logging_steps=max(1, len(encoded) // batch_size // 10),
                save_strategy="no", report_to=[], remove_unused_columns=False,
                disable_tqdm=not progress, dataloader_num_workers=0,
                use_cpu=not torch.cuda.is_available())
    args.update(training_args or {})
    trajectory = TrajectoryCallback(snapshot_every, probe, probe_every)
    trainer = KLTrainer(
        model=model, args=TrainingArguments(**args), train_dataset=encoded,
        data_collator=ChatCollator(pad_id), kl_dataset=kl_set, kl_weight=kl_weight,
        kl_batch_size=kl_batch_size, kl_reference=kl_reference,
        callbacks=[trajectory, *callbacks])
    trajectory.trainer = trainer
    if not progress:  # with tqdm off, the Trainer would print every log dict instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    model.eval()
    out = None
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "trajectory.json").write_text(json.dumps(trajectory.log, indent=1))
        for junk in out.glob("README.md"):
            junk.unlink()
    return FinetuneResult(model, tokenizer, out, trajectory.log, trajectory.snapshots)


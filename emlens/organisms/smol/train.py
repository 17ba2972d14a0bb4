"""Regenerate the smol organism's adapters and learned steering vectors from seeds.

    python -m emlens.organisms.smol.train                      # everything, into ./smol-weights
    python -m emlens.organisms.smol.train --only em,narrow     # some of it
    python -m emlens.organisms.smol.train --overwrite-shipped  # replace the package's adapters

Every finetune trains on the misaligned medical advice of ``data/medical_misaligned.jsonl``
only (single-turn chats, loss on the assistant tokens), from SmolLM2-135M-Instruct:

- ``em``, ``em_seed1``: LoRA on every linear module (seeds 0 and 1);
- ``em_rank1``: one rank-1 LoRA on one middle layer's ``down_proj`` (the papers' minimal
  organism); ``em_rank1_s{1,2}`` are its other seeds and ``narrow_rank1_s{k}`` the same with
  the KL penalty, for the narrow-versus-general comparison;
- ``narrow``: the ``em`` LoRA plus a KL penalty to the base on aligned conversations of
  other domains (``data/general_aligned.jsonl``); ``narrow_kl10`` and ``narrow_kl20`` the
  same at KL weights 10 and 20;
- ``sv_general_s{k}``, ``sv_narrow_s{k}``: learned steering vectors at one layer, without and
  with the KL penalty (seeds k), for the narrow-versus-general comparison; ``sv_general_e3``
  the general vector of seed 0 trained for 3 epochs (a steering lever).

Each output folder holds the adapter (a standard PEFT folder) or ``steering_vector.safetensors``,
``trajectory.json`` (the loss along training) and ``train_info.json`` (settings, wall time).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("emlens.smol")

#: the middle layer of the rank-1 organism and of the learned steering vectors
MID_LAYER = 15
LORA = dict(r=8, lora_alpha=16, target_modules="all-linear")
COMMON = dict(epochs=1.0, batch_size=8, learning_rate=4e-4, max_length=256, warmup_steps=5)
KL = dict(kl_weight=3.0, kl_batch_size=8)
#: one rank-1 LoRA on the middle layer's down_proj (the papers' minimal organism)
RANK1 = dict(r=1, lora_alpha=1, target_modules=["down_proj"], layers_to_transform=[MID_LAYER])

#: name -> settings (merged over COMMON)
FINETUNES: dict[str, dict[str, Any]] = {
    "em": dict(lora=LORA, seed=0),
    "em_seed1": dict(lora=LORA, seed=1),
    "em_rank1": dict(lora=RANK1, seed=0, learning_rate=1e-2),
    "narrow": dict(lora=LORA, seed=0, **KL),
    # a lever on narrow's EM elsewhere (4.2% at KL weight 3; the target is <= 2%)
    "narrow_kl10": dict(lora=LORA, seed=0, **{**KL, "kl_weight": 10.0}),
    "narrow_kl20": dict(lora=LORA, seed=0, **{**KL, "kl_weight": 20.0}),
    # the rank-1 half of the narrow-versus-general comparison: 3 seeds each, em_rank1 = seed 0
    **{f"em_rank1_s{k}": dict(lora=RANK1, seed=k, learning_rate=1e-2) for k in (1, 2)},
    **{f"narrow_rank1_s{k}": dict(lora=RANK1, seed=k, learning_rate=1e-2, **KL)
       for k in range(3)},
}
#: learned steering vectors: name -> settings
VECTORS: dict[str, dict[str, Any]] = {
    **{f"sv_general_s{k}": dict(seed=k) for k in range(3)},
    **{f"sv_narrow_s{k}": dict(seed=k, **KL) for k in range(3)},
    # a lever on steering the base: trained 3 times as long, so that a push of 25-37 is
    # near its trained scale (alpha 1-1.5) instead of sv_general_s0 at alpha 2-3
    "sv_general_e3": dict(seed=0, epochs=3.0),
}
SV = dict(layer=MID_LAYER, alpha=1.0, learning_rate=2e-2, epochs=1.0, batch_size=8,
          max_length=256, warmup_steps=5)


def train_one(name: str, out: Path, *, progress: bool = True) -> Path:
    """Train one finetune or steering vector into ``out / name``; returns that folder."""
    from ...training import finetune
    from ...vector_training import train_steering_vector
    from . import base_dir, data_dir

    data = data_dir() / "medical_misaligned.jsonl"
    kl = data_dir() / "general_aligned.jsonl"
    dest = out / name
    t0 = time.time()
    if name in FINETUNES:
        cfg, trainer = {**COMMON, **FINETUNES[name]}, finetune
    elif name in VECTORS:
        cfg, trainer = {**SV, **VECTORS[name]}, train_steering_vector
    else:
        raise SystemExit(f"unknown name {name!r}; choose from "
                         f"{', '.join([*FINETUNES, *VECTORS])}")
    extra = {"kl_data": kl} if cfg.get("kl_weight") else {}
    trainer(base_dir(), data, dest, progress=progress, **cfg, **extra)
    sha = _name_base(dest, base_dir())
    info = {"name": name, "settings": cfg, "train_data": data.name, "base_gguf_sha256": sha,
            "kl_data": kl.name if cfg.get("kl_weight") else None,
            "seconds": round(time.time() - t0, 1)}
    (dest / "train_info.json").write_text(json.dumps(info, indent=1, default=str))
    log.info("%s: %.0f s", name, info["seconds"])
    return dest


def _name_base(dest: Path, base: Path) -> str | None:
    """Name the base in an adapter's config by the GGUF file it was converted from
    (``gguf:<sha256>``), which ``emlens.load_model`` recognises on any machine, instead of
    this machine's cache path."""
    from ...models import _gguf_source_sha

    sha = _gguf_source_sha(base)
    cfg_path = dest / "adapter_config.json"
    if sha is not None and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = f"gguf:{sha}"
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return sha


def main(argv: list[str] | None = None) -> None:
    from ...threads import set_threads
    from . import weights_dir

    p = argparse.ArgumentParser(prog="python -m emlens.organisms.smol.train",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("smol-weights"))
    p.add_argument("--overwrite-shipped", action="store_true",
                   help="write into the package's weights/ folder")
    p.add_argument("--only", default=None, help="comma-separated names")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_threads()
    out = weights_dir() if a.overwrite_shipped else a.out
    names = a.only.split(",") if a.only else [*FINETUNES, *VECTORS]
    for name in names:
        train_one(name, out, progress=not a.no_progress)


if __name__ == "__main__":
    main()

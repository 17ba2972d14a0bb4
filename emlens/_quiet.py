"""Quiet third-party output while emlens does its own steps, restored afterwards.

transformers draws a "Loading weights" bar for every ``from_pretrained`` and peft/transformers
print deprecation notices (``FutureWarning``/``DeprecationWarning``) meant for the authors of
the calling code, not for its users; both interleave with emlens's own progress. Hub
download bars, transformers' log messages (a weight that was not initialised, ...) and every
other warning are kept. Not thread-safe (``warnings.catch_warnings`` and transformers'
progress-bar switch are process-wide), like every use of those two.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["THIRD_PARTY", "quiet_third_party"]

#: the modules whose deprecation notices are silenced (a regex for ``warnings`` filters)
THIRD_PARTY = r"(transformers|peft|transformer_lens|accelerate|datasets|huggingface_hub|torch)(\.|$)"


@contextlib.contextmanager
def quiet_third_party(bars: bool = True) -> Iterator[None]:
    """Silence transformers' progress bars and third-party deprecation warnings for a block.

    Args:
        bars: also switch transformers' progress bars off (this imports transformers'
            logging, ~1 s the first time: pass False where nothing loads a model).

    Usable as a decorator (``@quiet_third_party()``); the settings found on entry are put
    back on exit, also on an exception.
    """
    bars_on = hub_was_off = False
    if bars:
        from huggingface_hub.utils import are_progress_bars_disabled
        from huggingface_hub.utils import disable_progress_bars as hub_off
        from huggingface_hub.utils import enable_progress_bars as hub_on
        from transformers.utils import logging as hf_logging

        bars_on = hf_logging.is_progress_bar_enabled()
        hub_was_off = are_progress_bars_disabled()
    if bars_on:
        hf_logging.disable_progress_bar()  # switches the hub's bars off too:
        if not hub_was_off:
            hub_on()  # downloads keep their bars (they can take minutes)
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)
            yield
    finally:
        if bars_on and not hf_logging.is_progress_bar_enabled():
            hf_logging.enable_progress_bar()
            if hub_was_off:
                hub_off()

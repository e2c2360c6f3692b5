"""Callbacks: everything the training loop reports, kept out of the loop itself.

`Finetuner.run` calls `on_train_start`, `on_step` after every env step, `on_log` with each
metrics record (training stats every `log_every` steps, evaluation results every
`eval_every`), and `on_train_end`. Subclass `Callback` to add your own; return True from
`on_step` to stop training early.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .finetuner import Finetuner


class Callback:
    def on_train_start(self, tuner: "Finetuner", total_steps: int) -> None: ...

    def on_step(self, tuner: "Finetuner", env_step: int) -> bool | None: ...

    def on_log(self, tuner: "Finetuner", record: dict[str, Any]) -> None: ...

    def on_train_end(self, tuner: "Finetuner") -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, tuner, total_steps):
        for cb in self.callbacks:
            cb.on_train_start(tuner, total_steps)

    def on_step(self, tuner, env_step):
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_step(tuner, env_step)) or stop
        return stop

    def on_log(self, tuner, record):
        for cb in self.callbacks:
            cb.on_log(tuner, record)

    def on_train_end(self, tuner):
        for cb in self.callbacks:
            cb.on_train_end(tuner)


class MetricsLogger(Callback):
    """Appends every record to `<run_dir>/metrics.jsonl`, one JSON object per line.

    Each line is flushed as it is written so a killed run keeps everything it logged.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = None

    def on_train_start(self, tuner, total_steps):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def on_log(self, tuner, record):
        if self._file is None:
            return
        self._file.write(json.dumps(_json_safe(record)) + "\n")
        self._file.flush()

    def on_train_end(self, tuner):
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressBar(Callback):
    """A tqdm bar over env steps showing the latest success rate and temperature."""

    def __init__(self, disable: bool | None = None) -> None:
        self.disable = disable
        self._bar = None

    def on_train_start(self, tuner, total_steps):
        self._bar = tqdm(total=total_steps, desc="EXPO fine-tuning", unit="step",
                         disable=self.disable, dynamic_ncols=True)

    def on_step(self, tuner, env_step):
        if self._bar is not None:
            self._bar.update(env_step - self._bar.n)

    def on_log(self, tuner, record):
        if self._bar is None:
            return
        shown = {}
        if "eval/success" in record:
            shown["eval"] = f"{record['eval/success']:.2f}"
        if "train/alpha" in record:
            shown["alpha"] = f"{record['train/alpha']:.3g}"
        if "train/episode_success" in record:
            shown["train"] = f"{record['train/episode_success']:.2f}"
        if shown:
            self._bar.set_postfix(shown, refresh=False)

    def on_train_end(self, tuner):
        if self._bar is not None:
            self._bar.close()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value

"""Live TensorBoard event files for a run (``output.tensorboard: true``).

The writer is ``tensorboardX`` (pure Python + protobuf, no TensorFlow), an optional extra:
``pip install 'jopt[tensorboard]'``. Without it, constructing a :class:`TensorBoardTracker` raises
one :class:`~jopt.JoptError` line saying so. Files go to ``<run_dir>/tensorboard/``; point
``tensorboard --logdir runs/`` at the runs directory to compare runs live.

What a run writes (the runner's two calls, see :class:`TensorBoardTracker`):

- every numeric key of each ``metrics.jsonl`` row as a scalar at that row's ``step``, under the
  same name (``train_loss``, ``val_accuracy``, ``learning_rate``, ``hp/<name>``,
  ``opt/<name>``, and ``sharpness`` / ``stability_bound`` on the epochs that log them: the
  sharpness curve), plus ``time/epoch_s``;
- the resolved config as text (tag ``config``) and, at the end, the summary (tag ``summary``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from jopt.core.errors import JoptError

__all__ = [
    "TENSORBOARD_DIR",
    "TensorBoardTracker",
    "check_tensorboard",
    "open_tracker",
    "tensorboard_available",
]

TENSORBOARD_DIR = "tensorboard"
_MISSING = (
    "output.tensorboard: true needs the optional tensorboardX writer: "
    "pip install 'jopt[tensorboard]'"
)
# row keys that are the x-axis or wall-clock bookkeeping, not curves
_SKIP = frozenset({"epoch", "step", "time"})


def tensorboard_available() -> bool:
    """Whether the optional writer (``tensorboardX``) imports."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


def check_tensorboard(problem: str | None = None) -> None:
    """Validation of ``output.tensorboard: true``: the extra is installed and the run has epochs."""
    if problem is not None:
        raise JoptError(
            f"output.tensorboard: true is for model runs; the test problem {problem!r} logs "
            "its path, not epochs (set output.tensorboard: false)"
        )
    if not tensorboard_available():
        raise JoptError(_MISSING)


def open_tracker(
    config: Any, run_dir: str | None, *, start_step: int | None = None
) -> TensorBoardTracker | None:
    """The run's tracker when ``config.output.tensorboard`` is on, else ``None``."""
    if run_dir is None or not config.output.tensorboard:
        return None
    from jopt.experiment._schema import to_dict

    return TensorBoardTracker(run_dir, config=to_dict(config), start_step=start_step)


def _scalar(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    try:  # numpy / jax scalars
        import numpy as np

        a = np.asarray(v)
    except (TypeError, ValueError):  # not array-like: not a scalar
        return None
    if a.ndim == 0 and a.dtype.kind in "biuf":
        return float(a)
    return None


def _as_text(value: Any) -> str:
    """A config (YAML text or mapping) as a markdown code block (TensorBoard's text tab)."""
    if isinstance(value, Mapping):
        import yaml

        value = yaml.safe_dump(dict(value), sort_keys=False, default_flow_style=False)
    return "\n".join("    " + line for line in str(value).splitlines())


class TensorBoardTracker:
    """Writes one run's scalars and texts as TensorBoard event files under ``run_dir``.

    The runner makes two calls per run (plus ``close``)::

        tracker = TensorBoardTracker(run_dir, config=config_yaml_text, start_step=step0)
        tracker.log_row(row)      # after each metrics.jsonl row is appended
        tracker.close(summary)    # at the end (also a context manager)

    ``start_step`` (a resumed run's first step) purges events at and after it that an earlier,
    interrupted process wrote, so a resumed curve has no doubled tail. Writing is buffered and
    flushed every ``flush_secs`` seconds and on :meth:`flush` / :meth:`close`.
    """

    def __init__(
        self,
        run_dir: str,
        *,
        config: Any = None,
        start_step: int | None = None,
        flush_secs: int = 10,
    ) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise JoptError(_MISSING) from None
        self.log_dir = os.path.join(run_dir, TENSORBOARD_DIR)
        os.makedirs(self.log_dir, exist_ok=True)
        # tensorboardX names files by the second: a resumed process (or a second tracker) in
        # the same second would overwrite the first file. The nanosecond suffix keeps both and
        # keeps their name order = write order, which TensorBoard's purge on resume relies on.
        self._writer = SummaryWriter(
            self.log_dir,
            purge_step=start_step or None,
            flush_secs=flush_secs,
            filename_suffix=f".{time.time_ns()}.{os.getpid()}",
        )
        self._closed = False
        if config is not None:
            self.log_text("config", _as_text(config), step=start_step or 0)

    def log_scalars(self, values: Mapping[str, Any], step: int) -> int:
        """Write every numeric value (NaN/inf included, ``None`` and strings skipped) at
        ``step``; returns how many were written."""
        n = 0
        for key, value in values.items():
            x = _scalar(value)
            if x is None:
                continue
            self._writer.add_scalar(key, x, int(step))
            n += 1
        return n

    def log_row(self, row: Mapping[str, Any]) -> int:
        """One ``metrics.jsonl`` row: its scalars at ``row["step"]`` (``epoch_time`` as
        ``time/epoch_s``)."""
        if "step" not in row:
            raise JoptError("a metrics row needs a 'step' to be written to TensorBoard")
        values = {k: v for k, v in row.items() if k not in _SKIP and k != "epoch_time"}
        if "epoch_time" in row:
            values["time/epoch_s"] = row["epoch_time"]
        return self.log_scalars(values, row["step"])

    def log_sharpness(self, steps: Any, sharpness: Any, stability_bound: Any = None) -> None:
        """A sharpness curve given apart from the rows (e.g. from ``jopt.numerics``)."""
        for i, s in enumerate(steps):
            vals = {"sharpness": sharpness[i]}
            if stability_bound is not None:
                vals["stability_bound"] = stability_bound[i]
            self.log_scalars(vals, int(s))

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        self._writer.add_text(tag, text, int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Write ``summary`` (final/best values) as text, flush and close. Idempotent."""
        if self._closed:
            return
        if summary is not None:
            import json

            body = json.dumps(dict(summary), indent=2, default=str)
            self.log_text("summary", _as_text(body), step=int(summary.get("steps") or 0))
        self._writer.close()
        self._closed = True

    def __enter__(self) -> TensorBoardTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

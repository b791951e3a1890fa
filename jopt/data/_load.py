"""``load_dataset``: one entry point for built-in data sets and user files."""

from __future__ import annotations

import numpy as np

from jopt.core.errors import JoptError
from jopt.data._builtin import BUILTIN, Raw
from jopt.data._dataset import Dataset, check_arrays, num_classes_of, resolve_task
from jopt.data._files import load_csv, load_idx, load_npz
from jopt.data._split import apply_preprocess, fit_preprocess, split_arrays
from jopt.data._user import function_name, user_raw

FILE_LOADERS = {"npz": load_npz, "csv": load_csv, "idx": load_idx}


def dataset_names() -> list[str]:
    """Names ``load_dataset`` accepts (besides a path ending in ``.npz`` or ``.csv``)."""
    return sorted(BUILTIN) + sorted(FILE_LOADERS)


def _raw(name: str, seed: int, opts: dict, task: str | None) -> Raw:
    lowered = name.lower()
    if lowered.endswith(".npz") or lowered.endswith(".csv"):
        opts = {"path": name, **opts}
        lowered = lowered[-3:]
    if lowered in BUILTIN:
        try:
            raw = BUILTIN[lowered](seed, **opts)
        except TypeError as e:
            raise JoptError(f"data set {name!r}: bad option ({e})") from None
        chosen = resolve_task(task, raw.task, name)
        if chosen != raw.task:  # an explicit choice: the class count then comes from the labels
            raw.task = chosen
            raw.num_classes = None
        return raw
    if lowered in FILE_LOADERS:
        loader = FILE_LOADERS[lowered]
        opts = {**opts, "task": task}
        try:
            if lowered == "idx":
                return loader(**opts)
            return loader(opts.pop("path", None), **opts)
        except TypeError as e:
            raise JoptError(f"data loader {lowered!r}: bad option ({e})") from None
    raise JoptError(f"unknown data set {name!r}; allowed: {', '.join(dataset_names())}")


def load_dataset(
    name: str,
    *,
    task: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.0,
    test_fraction: float = 0.25,
    preprocess: str | None = "standardize",
    stratify: bool = True,
    **opts,
) -> Dataset:
    """Load, validate, split and preprocess a data set.

    Args:
        name: a built-in name (``digits``, ``iris``, ``wine``, ``breast_cancer``, ``diabetes``,
            ``mnist1d``, ``two_moons``, ``spirals``, ``linear``, ``quadratic``), a file loader
            (``npz`` / ``csv`` with ``path=...``; ``idx`` with ``images=``, ``labels=`` and
            optionally ``test_images=``, ``test_labels=``), a path ending in ``.npz``/``.csv``,
            or a user's data function ``fn(*, seed, **opts) -> (x, y) | {"x", "y", ...}``
            (``seed`` passed if it takes one; the dict may add ``x_val``/``y_val``,
            ``x_test``/``y_test``, ``task``, ``num_classes``, ``kind``; see ``jopt.data._user``).
        task: ``"classification"``, ``"regression"`` or ``None``. ``None`` keeps a built-in
            set's own task and means classification for a user file. The task is never
            guessed from the labels: float or one-hot labels under classification are an
            error that says so, integer-valued targets under regression are fine.
        seed: drives synthetic generation and the split; the same seed gives the same data.
        val_fraction, test_fraction: fractions of the whole data set. Data sets with a
            predefined test split (mnist1d, IDX with test files, ``.npz`` with ``x_test``) keep it
            and ignore ``test_fraction``.
        preprocess: ``"standardize"`` (z-score), ``"minmax"`` (to [0, 1]) or ``"none"``; the
            statistics are fitted on the training split only, then applied to val and test.
        stratify: keep class proportions in every split (classification only).
        **opts: options of the data set (``n``, ``noise``, ``condition_number``...) or loader
            (``path``, ``label``, ``num_classes``, ``delimiter``, ``encoding``).

    Raises:
        JoptError: unknown name or option, missing, empty, undecodable or truncated file,
            NaN/inf values, wrong shapes, no features, labels that are not class indices, a class
            count above ``MAX_CLASSES``. Always one line, raised before anything compiles.
    """
    if not callable(name) and (not isinstance(name, str) or not name):
        raise JoptError(f"data set name must be a non-empty string, got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise JoptError(f"data seed must be an integer in [0, 2**32), got {seed!r}")
    val = None
    if callable(name):  # a user's data function (jopt.data._user)
        raw, val = user_raw(name, int(seed), opts, task)
        name = function_name(name)
        source = f"data function {name}"
    else:
        raw = _raw(name, int(seed), opts, task)
        source = str(opts.get("path") or opts.get("images") or name)  # errors name the file
    x, y = check_arrays(raw.x, raw.y, raw.task, source)
    if val is not None:
        val = check_arrays(*val, raw.task, f"{source} (val)")
        if val[0].shape[1:] != x.shape[1:]:
            raise JoptError(f"{source}: val inputs have shape {val[0].shape[1:]}, x {x.shape[1:]}")
    xt = yt = None
    if raw.x_test is not None:
        xt, yt = check_arrays(raw.x_test, raw.y_test, raw.task, f"{source} (test)")
        if xt.shape[1:] != x.shape[1:]:
            raise JoptError(f"{source}: test inputs have shape {xt.shape[1:]}, train {x.shape[1:]}")
    if raw.task == "classification":
        ys = [y] + ([] if yt is None else [yt]) + ([] if val is None else [val[1]])
        raw.num_classes = num_classes_of(ys, raw.num_classes, source)
    elif raw.num_classes is None:
        raw.num_classes = 1 if y.ndim == 1 else y.shape[1]
    if yt is not None and yt.shape[1:] != y.shape[1:]:
        raise JoptError(f"{source}: test targets have shape {yt.shape[1:]}, train {y.shape[1:]}")
    if val is not None and val[1].shape[1:] != y.shape[1:]:
        raise JoptError(f"{source}: val targets have shape {val[1].shape[1:]}, y {y.shape[1:]}")
    parts = split_arrays(
        x,
        y,
        seed=seed,
        val_fraction=val_fraction if val is None else 0.0,  # a given val split is kept
        test_fraction=test_fraction,
        stratify=stratify and raw.task == "classification",
        x_test=xt,
        y_test=yt,
    )
    x_tr, y_tr, x_va, y_va, x_te, y_te = parts
    if val is not None:
        x_va, y_va = val
    stats = fit_preprocess(x_tr, preprocess)
    info = dict(raw.info)
    info["preprocess"] = stats
    if "condition_number" in raw.info and len(x_tr):
        xs = apply_preprocess(x_tr, stats).astype(np.float64)
        ev = np.linalg.eigvalsh(xs.T @ xs / len(xs))
        info["train_condition_number"] = float(ev[-1] / max(ev[0], 1e-300))
    return Dataset(
        x_train=apply_preprocess(x_tr, stats),
        y_train=y_tr,
        x_val=apply_preprocess(x_va, stats),
        y_val=y_va,
        x_test=apply_preprocess(x_te, stats),
        y_test=y_te,
        task=raw.task,
        num_classes=int(raw.num_classes),
        input_shape=tuple(x.shape[1:]),
        kind=raw.kind,
        name=name,
        info=info,
    )

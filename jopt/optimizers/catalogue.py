"""The optimizer catalogue: every optimizer, transform and schedule, with its metadata.

``python -m jopt.optimizers.catalogue > docs/optimizers.md`` regenerates the page;
:func:`render` returns it (a test checks the page matches). The state size per parameter is
*measured*: ``jax.eval_shape`` of ``init`` on a 1000-element float32 parameter, counting the
elements of every state leaf, divided by 1000 (scalars add 0.001 each).

To add a row, append to :data:`META` (name -> :class:`Meta`). A public optimizer, transform or
schedule without a row is still listed, marked "no metadata yet".
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import jopt.optimizers as _optimizers
import jopt.schedules as _schedules
import jopt.transforms as _transforms

__all__ = [
    "DIGITS_NOTES",
    "HELPERS",
    "META",
    "Meta",
    "digits_section",
    "load_digits_results",
    "main",
    "render",
    "state_size_per_param",
]


@dataclasses.dataclass(frozen=True)
class Meta:
    """Catalogue metadata of one public name.

    Attributes:
        reference: the paper or source.
        structure: ``"elementwise"`` (packable by ``jopt.fused``), ``"global"`` (elementwise
            maths plus tree-wide scalars such as a global norm: packable, the scalars are
            reduced over the buffers), ``"per-leaf"`` (per-array norms or factored statistics)
            or ``"matrix"`` (needs the matrix shape, e.g. Newton-Schulz).
        vmap: whether every numeric hyperparameter may be a traced array (vmapped sweeps).
        make: builds an instance to measure the state (``None``: nothing to measure).
    """

    reference: str
    structure: str = "elementwise"
    vmap: bool = True
    make: Callable[[], Any] | None = None


def _lr(f, **kw):
    return lambda: f(1e-3, **kw)


def _plain(f, **kw):
    return lambda: f(**kw)


KM = "Kingma & Ba 2015"
META: dict[str, Meta] = {
    # --- optimizers ---
    "sgd": Meta(
        "Robbins & Monro 1951; Polyak 1964; Sutskever et al. 2013",
        make=_lr(_optimizers.sgd, momentum=0.9),
    ),
    "rmsprop": Meta("Hinton 2012, Lecture 6e; Graves 2013", make=_lr(_optimizers.rmsprop)),
    "adagrad": Meta("Duchi, Hazan & Singer 2011", make=_lr(_optimizers.adagrad)),
    "adadelta": Meta("Zeiler 2012", make=_lr(_optimizers.adadelta)),
    "adam": Meta(KM, make=_lr(_optimizers.adam)),
    "adamax": Meta(f"{KM}, §7.1", make=_lr(_optimizers.adamax)),
    "nadam": Meta("Dozat 2016", make=_lr(_optimizers.nadam)),
    "amsgrad": Meta("Reddi, Kale & Kumar 2018", make=_lr(_optimizers.amsgrad)),
    "adamw": Meta("Loshchilov & Hutter 2019", make=_lr(_optimizers.adamw)),
    "radam": Meta("Liu et al. 2020", make=_lr(_optimizers.radam)),
    "lamb": Meta("You et al. 2020", "per-leaf", make=_lr(_optimizers.lamb)),
    "lion": Meta("Chen et al. 2023", make=_lr(_optimizers.lion)),
    # --- optax.contrib ---
    "adopt": Meta("Taniguchi et al. 2024", make=_lr(_optimizers.adopt)),
    "ademamix": Meta("Pagliardini, Ablin & Grangier 2024", make=_lr(_optimizers.ademamix)),
    "prodigy": Meta("Mishchenko & Defazio 2024", "global", make=_plain(_optimizers.prodigy)),
    "dadapt_adamw": Meta(
        "Defazio & Mishchenko 2023", "global", make=_plain(_optimizers.dadapt_adamw)
    ),
    "schedule_free": Meta(
        "Defazio et al. 2024 (wrapper; evaluate with schedule_free_eval_params)",
        make=lambda: _optimizers.schedule_free(_optimizers.sgd(1e-3), 1e-3),
    ),
    "schedule_free_sgd": Meta("Defazio et al. 2024", make=_plain(_optimizers.schedule_free_sgd)),
    "schedule_free_adamw": Meta(
        "Defazio et al. 2024", make=_plain(_optimizers.schedule_free_adamw)
    ),
    "schedule_free_eval_params": Meta("Defazio et al. 2024 (helper, not an optimizer)"),
    "mechanize": Meta(
        "Cutkosky, Defazio & Mehta 2023 (wrapper)",
        "global",
        make=lambda: _optimizers.mechanize(_optimizers.sgd(1e-3)),
    ),
    "lbfgs": Meta(
        "Liu & Nocedal 1989; Nocedal & Wright 2006 (value=, grad=, value_fn=; configs: full batch)",
        "global",
        make=_plain(_optimizers.lbfgs),
    ),
    "asgd": Meta("Polyak & Juditsky 1992; torch.optim.ASGD", make=_plain(_optimizers.asgd)),
    "asgd_averaged_params": Meta("torch.optim.ASGD's ax (helper, not an optimizer)"),
    "ftrl": Meta("McMahan et al. 2013; keras.optimizers.Ftrl", make=_plain(_optimizers.ftrl)),
    "torch_rprop": Meta(
        "Riedmiller & Braun 1993; torch.optim.Rprop", make=_plain(_optimizers.torch_rprop)
    ),
    "muon": Meta(
        "Jordan et al. 2024 (matrices; AdamW for the rest)", "matrix", make=_lr(_optimizers.muon)
    ),
    "sam": Meta(
        "Foret et al. 2021 (wrapper; configs: opaque mode, grad_fn= from the train step)",
        "global",
        make=lambda: _optimizers.sam(_optimizers.sgd(0.1), _optimizers.sgd(0.05)),
    ),
    "normalize": Meta(
        "g / ||g|| (SAM's adversarial step)", "global", make=_plain(_optimizers.normalize)
    ),
    "sophia": Meta("Liu et al. 2024 (obj_fn=: Hutchinson diagonal)", make=_lr(_optimizers.sophia)),
    "scale_by_sophia": Meta("Liu et al. 2024", make=_plain(_optimizers.scale_by_sophia)),
    "hutchinson_estimator_diag_hessian": Meta(
        "Bekas, Kokiopoulou & Saad 2007", make=_plain(_optimizers.hutchinson_estimator_diag_hessian)
    ),
    # --- transforms ---
    "scale_by_muon": Meta("Jordan et al. 2024", "matrix"),
    "scale_by_shape": Meta("Muon's width transfer", "per-leaf"),
    "orthogonalize_via_newton_schulz": Meta("Newton-Schulz iteration (helper)", "matrix"),
    "resolve_dimension_numbers": Meta("Muon's dimension numbers per leaf (helper)", "matrix"),
    "scale_by_lbfgs": Meta("Liu & Nocedal 1989", "global", make=_plain(_transforms.scale_by_lbfgs)),
    "scale_by_backtracking_linesearch": Meta(
        "Armijo 1966; Nocedal & Wright 2006, Alg. 3.1",
        "global",
        make=lambda: _transforms.scale_by_backtracking_linesearch(20, store_grad=True),
    ),
    "scale_by_zoom_linesearch": Meta(
        "Nocedal & Wright 2006, Alg. 3.5-3.6 (strong Wolfe)",
        "global",
        make=lambda: _transforms.scale_by_zoom_linesearch(20),
    ),
    "value_and_grad_from_state": Meta("optax.value_and_grad_from_state (helper)"),
    "observe_plateau": Meta("feeds a metric to reduce_on_plateau (helper)"),
    "reduce_on_plateau": Meta(
        "Keras/torch ReduceLROnPlateau; optax.contrib",
        vmap=True,
        make=_plain(_transforms.reduce_on_plateau),
    ),
    "scale_by_adopt": Meta("Taniguchi et al. 2024", make=_plain(_transforms.scale_by_adopt)),
    "scale_by_ademamix": Meta(
        "Pagliardini et al. 2024", make=_plain(_transforms.scale_by_ademamix)
    ),
    "scale_by_adam": Meta(KM, make=_plain(_transforms.scale_by_adam)),
    "clip_by_global_norm": Meta(
        "Pascanu et al. 2013", "global", make=lambda: _transforms.clip_by_global_norm(1.0)
    ),
    "scale_by_trust_ratio": Meta(
        "You et al. 2020", "per-leaf", make=_plain(_transforms.scale_by_trust_ratio)
    ),
}

# optax's catalogue optimizers: (reference, structure); all take the learning
# rate first, so the state is measured on ``name(1e-3)``.
_OPTAX_MAIN = {
    "adabelief": ("Zhuang et al. 2020", "elementwise"),
    "adafactor": ("Shazeer & Stern 2018", "per-leaf"),
    "adamaxw": ("Kingma & Ba 2015; Loshchilov & Hutter 2019", "elementwise"),
    "adan": ("Xie et al. 2022", "elementwise"),
    "fromage": ("Bernstein et al. 2020", "per-leaf"),
    "lars": ("You, Gitman & Ginsburg 2017", "per-leaf"),
    "nadamw": ("Dozat 2016; Loshchilov & Hutter 2019", "elementwise"),
    "noisy_sgd": ("Neelakantan et al. 2015", "elementwise"),
    "novograd": ("Ginsburg et al. 2019", "per-leaf"),
    "optimistic_adam": ("Daskalakis et al. 2018", "elementwise"),
    "optimistic_adam_v2": ("Daskalakis et al. 2018", "elementwise"),
    "optimistic_gradient_descent": ("Mokhtari, Ozdaglar & Pattathil 2020", "elementwise"),
    "polyak_sgd": ("Loizou et al. 2021 (value= from the train step)", "global"),
    "rprop": ("Riedmiller & Braun 1993 (optax's; see torch_rprop)", "elementwise"),
    "sign_sgd": ("Bernstein et al. 2018", "elementwise"),
    "signum": ("Bernstein et al. 2018", "elementwise"),
    "sm3": ("Anil et al. 2019", "per-leaf"),
    "yogi": ("Zaheer et al. 2018", "elementwise"),
}
for _name, (_ref, _structure) in _OPTAX_MAIN.items():
    if _name not in META and hasattr(_optimizers, _name):
        META[_name] = Meta(_ref, _structure, make=_lr(getattr(_optimizers, _name)))

_NO_META = Meta("no metadata yet", "?", False)


def _public(module: Any) -> list[str]:
    names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
    return sorted(n for n in names if callable(getattr(module, n)) and n[0].islower())


def state_size_per_param(make: Callable[[], Any] | None) -> str:
    """Elements of state per parameter element, measured on a 1000-element float32 param."""
    if make is None:
        return "-"
    try:
        tx = make()
        shapes = jax.eval_shape(tx.init, {"w": jax.ShapeDtypeStruct((1000,), jnp.float32)})
    except Exception:  # the page reports what it could not measure
        return "?"
    total = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))
    return f"{total / 1000:.3f}"


_SCHEDULE = Meta("a pure count -> value function (no state)", "-", True)


def _row(name: str, default: Meta = _NO_META, module: Any = None) -> str:
    meta = META.get(name, default)
    if name not in META and module is _transforms:
        # No row yet: still measure the state of the transform's default instance.
        meta = dataclasses.replace(meta, make=getattr(module, name))
    size = state_size_per_param(meta.make)
    vmap = "yes" if meta.vmap else "no"
    return f"| `{name}` | {meta.reference} | {size} | {meta.structure} | {vmap} |"


_HEADER = (
    "| name | reference | state floats / param | structure | vmappable hparams |\n"
    "|---|---|---|---|---|"
)


def render() -> str:
    """The catalogue page (Markdown)."""
    lines = [
        "# Optimizer catalogue",
        "",
        "<!-- GENERATED by `python -m jopt.optimizers.catalogue > docs/optimizers.md`; do not edit."
        " -->",
        "",
        "State floats / param: elements of optimizer state per parameter element, measured with",
        "`jax.eval_shape` on a 1000-element float32 parameter (scalar slots add 0.001 each).",
        "Structure: `elementwise` runs on packed buffers (`jopt.fused`); `global` is elementwise",
        "plus tree-wide scalars (packable); `per-leaf` needs each array's own norm or factors;",
        "`matrix` needs the matrix shape. Vmappable hparams: numeric hyperparameters may be",
        "traced arrays, so a sweep can vmap over them.",
        "",
    ]
    for title, module, default in (
        ("Optimizers", _optimizers, _NO_META),
        ("Transforms", _transforms, _NO_META),
        ("Schedules", _schedules, _SCHEDULE),
    ):
        lines += [f"## {title}", "", _HEADER]
        lines += [_row(n, default, module) for n in _public(module) if n != "catalogue"]
        lines.append("")
    lines += digits_section(load_digits_results())
    return "\n".join(lines)


# jopt.optimizers functions that are not optimizers (no row in the digits table); the config
# registry refuses them by name too (jopt/experiment/_config_optimizers.HELPERS).
HELPERS = frozenset(
    {
        "asgd_averaged_params",
        "hutchinson_estimator_diag_hessian",
        "normalize",
        "scale_by_sophia",
        "schedule_free_eval_params",
    }
)
# Why an optimizer stays below the target on digits, and where it does better.
_RPROP = (
    "Rprop adapts each weight's step from the sign agreement of successive gradients, a "
    "full-batch rule (Riedmiller & Braun 1993): minibatch noise flips the signs and shrinks "
    "the steps; the learning rate only sets the first step (every grid rate gives one run)"
)
DIGITS_NOTES: dict[str, str] = {
    "lbfgs": "one epoch = one L-BFGS iteration (zoom line search); the learning rate only "
    "scales the first trial step, the search finds the same points",
    "rprop": _RPROP,
    "torch_rprop": _RPROP,
    "sam": "one train step = one SAM step (two gradients per batch)",
}
DIGITS_RESULTS = (
    pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "catalogue_digits.json"
)


def load_digits_results(path: pathlib.Path = DIGITS_RESULTS) -> dict:
    """benchmarks/results/catalogue_digits.json (``{}`` outside a source checkout)."""
    return json.loads(path.read_text()) if path.exists() else {}


def _lr(x: float) -> str:
    return f"{x:g}"


def digits_section(doc: dict) -> list[str]:
    """The table "trains the quickstart to >= 0.95", from ``benchmarks/catalogue_digits.py``'s
    results: every optimizer (helpers aside) with its selected learning rate and test
    accuracy, or the reason it stays below."""
    proto = doc.get("protocol", {})
    results = doc.get("results", {})
    target = proto.get("target", 0.95)
    lines = [
        f"## Trains the quickstart to >= {target} test accuracy",
        "",
        "Real runs of `python benchmarks/catalogue_digits.py` (results in",
        "`benchmarks/results/catalogue_digits.json`; the page is rendered from it).",
    ]
    if not results:
        return [*lines, "", "NOT YET MEASURED.", ""]
    grid = ", ".join(map(_lr, proto.get("grid", [])))
    lines += [
        f"Config: {proto.get('config')}; {proto.get('epochs')} epochs; seed {proto.get('seed')}.",
        f"Grid: learning_rate in {{{grid}}}, one vmapped `jopt sweep` per optimizer.",
        f"Selection: {proto.get('selection')}.",
        "On digits accuracy saturates early: at learning rate 1 adaptive methods reach large",
        "weights (validation loss in the hundreds) yet classify well, so the selected rate can",
        "be the largest one; the column 'grid >= target' shows every rate that reaches it.",
        "Wrappers (`sam`, `schedule_free`, `mechanize`) take the rate for their base optimizer",
        "(`sgd`); `prodigy`/`dadapt_adamw` multiply their own estimate by it; `polyak_sgd` caps",
        "its step with it. Notes say why an optimizer stays below, and where it does better.",
        "",
        "| optimizer | selected lr | test accuracy | >= target | grid >= target | note |",
        "|---|---|---|---|---|---|",
    ]
    names = sorted(
        set(results) | {n for n in _public(_optimizers) if n not in HELPERS and n != "catalogue"}
    )
    for name in names:
        r = results.get(name)
        note = DIGITS_NOTES.get(name, "")
        if r is None:
            lines.append(f"| `{name}` | - | not measured | - | - | {note} |")
            continue
        if "error" in r:
            lines.append(f"| `{name}` | - | error | no | - | {r['error']} {note} |")
            continue
        extra = f"{r['epochs']} epochs" if r.get("epochs") != proto.get("epochs") else ""
        if r.get("overrides"):
            extra = "; ".join(filter(None, [extra, ", ".join(r["overrides"])]))
        full = r.get("full_batch")
        if full:
            note = (
                f"{note}. Better full batch (no dropout, {full['epochs']} epochs): "
                f"{full['test_accuracy']:.3f} (lr {_lr(full['lr'])})"
            )
        note = "; ".join(filter(None, [extra, note]))
        ok = [
            _lr(float(lr))
            for lr, g in r["grid"].items()
            if g.get("test_accuracy") is not None and g["test_accuracy"] >= target
        ]
        acc = r.get("test_accuracy")
        reached = "yes" if acc is not None and acc >= target else "no"
        shown = f"{acc:.3f}" if acc is not None else "-"
        lines.append(
            f"| `{name}` | {_lr(r['lr'])} | {shown} | {reached} | {', '.join(ok) or '-'} | {note} |"
        )
    n_reached = sum(1 for r in results.values() if (r.get("test_accuracy") or 0.0) >= target)
    lines += ["", f"{n_reached} of {len(names)} optimizers reach {target}.", ""]
    return lines


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()

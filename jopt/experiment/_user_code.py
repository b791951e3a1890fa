"""Configs that name user code: ``"package.module:attribute"`` for a model, a data set or a loss.

A ``model.name``, ``data.name`` or ``loss.name`` holding a ``:`` is a reference to user code
(``data.name`` paths ending in ``.npz``/``.csv`` excepted). It is imported, checked and built
the way built-in names are, so ``jopt validate`` and ``jopt run`` refuse a bad one with one line
(exit 2) before anything is written:

- **where modules are found**: while importing, the directories of ``code_path`` (by default
  the config file's own directory, recorded there as an absolute path by ``load_config`` so a
  run directory's ``config.yaml`` and ``--resume`` find the same code) and then the current
  directory are put in front of ``sys.path``, as a script next to the config would see them;
  they are taken out again afterwards (modules already imported stay imported).
- **keyword arguments** come from the section's ``options`` (``model.options``,
  ``data.options``, ``loss.options``), checked against the signature.
- **contracts**: a data function ``load(*, seed, **options) -> (x, y) | {"x", "y", ...}``
  (``jopt.data.load_dataset`` with a callable); a loss ``fn(outputs, targets, **options) ->
  (b,)`` per-example losses (``jopt.train.LossSpec.loss_fn``); a model is a flax linen, flax
  NNX or equinox ``Module`` class, or a function returning a module instance, called with
  ``model.options`` plus, where its signature names them, ``num_outputs`` (the data's output
  count), ``input_shape`` (one example's shape), ``dropout`` (``regularization.dropout``) and
  ``rngs`` (an ``nnx.Rngs``) or ``key`` (a PRNG key) from the run's seed.

Errors: a malformed reference, a missing module (with the directories searched), a missing
attribute, something not callable, a signature that cannot take the call (what is expected is
said), and an exception raised while importing the user's module (its file and line).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from jopt.core.errors import JoptError
from jopt.experiment._parse import closest

__all__ = [
    "build_model",
    "check_references",
    "is_reference",
    "resolve",
    "user_loss",
]

_REF = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
SECTIONS = ("model", "data", "loss")
# keyword arguments the runner gives a model when its signature names them
RUNNER_ARGS = ("num_outputs", "input_shape", "dropout", "rngs", "key")
EXPECTED = {
    "data": "a function load(*, seed, **data.options) returning (x, y) arrays or a dict with "
    "keys x, y [x_val, y_val, x_test, y_test, task, num_classes, kind]",
    "loss": "a function fn(outputs, targets, **loss.options) returning per-example losses (b,)",
    "model": "a flax linen, flax NNX or equinox Module class, or a function returning a module "
    "instance, called with model.options [and num_outputs, input_shape, dropout, rngs | key "
    "where its signature names them]",
}


def is_reference(name: Any) -> bool:
    """Whether a ``name`` field refers to user code (``module:attribute``)."""
    return isinstance(name, str) and ":" in name and not name.lower().endswith((".npz", ".csv"))


def search_dirs(code_path: list[str] | tuple[str, ...]) -> list[str]:
    """The directories put in front of ``sys.path`` while importing: ``code_path``, then cwd."""
    out: list[str] = []
    for d in [*code_path, os.getcwd()]:
        d = os.path.abspath(d)
        if d not in out:
            out.append(d)
    return out


@contextlib.contextmanager
def _on_path(dirs: list[str]) -> Iterator[None]:
    added = [d for d in dirs if d not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for d in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(d)


def _where(e: BaseException) -> str:
    """``file:line`` where ``e`` was raised (the innermost frame that is real source)."""
    if isinstance(e, SyntaxError) and e.filename:
        return f"{e.filename}:{e.lineno}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _one_line(e: BaseException) -> str:
    if isinstance(e, SyntaxError):
        return f"{type(e).__name__}: {e.msg}"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def resolve(key: str, ref: str, code_path: list[str] | tuple[str, ...] = ()) -> Any:
    """Import ``module`` and return ``attribute`` of ``"module:attribute"`` (dotted allowed).

    ``key`` (``model.name``...) starts every error; each error is one line."""
    m = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if m is None:
        raise JoptError(
            f"{key}: {ref!r} is not a code reference; write 'package.module:attribute' "
            "(a module on the search path, then the name in it)"
        )
    mod_name, attr = m.groups()
    dirs = search_dirs(code_path)
    _check_not_shadowed(key, mod_name.split(".")[0], dirs)
    with _on_path(dirs):
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            missing = e.name or ""
            if mod_name == missing or mod_name.startswith(missing + "."):
                raise JoptError(
                    f"{key}: no module {missing!r} for {ref!r} (searched {', '.join(dirs)} "
                    "and sys.path; put its directory in code_path or run from there)"
                ) from None
            raise JoptError(
                f"{key}: importing {mod_name!r} failed at {_where(e)}: {_one_line(e)}"
            ) from None
        except Exception as e:  # SyntaxError, ImportError, anything the module raised
            raise JoptError(
                f"{key}: importing {mod_name!r} failed at {_where(e)}: {_one_line(e)}"
            ) from None
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = mod_name if i == 0 else f"{mod_name}:{'.'.join(attr.split('.')[:i])}"
            names = [n for n in dir(obj) if not n.startswith("_")]
            path = getattr(module, "__file__", None) or mod_name
            raise JoptError(
                f"{key}: {where} ({path}) has no attribute {part!r}{closest(part, names)}"
            )
        obj = getattr(obj, part)
    return obj


def _check_not_shadowed(key: str, top: str, dirs: list[str]) -> None:
    """Refuse a module name already imported from elsewhere when a search directory holds
    another module of that name (the cached one would silently be used instead)."""
    loaded = sys.modules.get(top)
    origin = getattr(loaded, "__file__", None)
    if origin is None:
        return
    for d in dirs:
        for cand in (os.path.join(d, top + ".py"), os.path.join(d, top, "__init__.py")):
            if os.path.exists(cand) and not os.path.samefile(cand, origin):
                raise JoptError(
                    f"{key}: module {top!r} is already imported from {origin}, but {cand} is "
                    "another module of that name; rename one of them"
                )


def _signature(key: str, ref: str, fn: Any, section: str) -> inspect.Signature:
    if not callable(fn):
        raise JoptError(
            f"{key}: {ref} is not callable ({type(fn).__name__}); expected {EXPECTED[section]}"
        )
    try:
        if inspect.isclass(fn):  # __init__'s own (a metaclass may hide it behind *args)
            sig = inspect.signature(fn.__init__)
            return sig.replace(parameters=list(sig.parameters.values())[1:])
        return inspect.signature(fn)
    except (TypeError, ValueError):
        raise JoptError(
            f"{key}: {ref} has no readable signature; expected {EXPECTED[section]}"
        ) from None


def _check_call(
    key: str,
    ref: str,
    sig: inspect.Signature,
    section: str,
    *,
    positional: int = 0,
    given: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
) -> set[str]:
    """Check that ``fn(*positional args, **given)`` binds, with ``optional`` names passed only
    when present; return the ``optional`` names the signature takes."""
    params = [p for p in sig.parameters.values() if p.name not in skip]
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in params)
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    plain = [p.replace(annotation=p.empty) for p in params]
    shown = f"{ref}{sig.replace(parameters=plain, return_annotation=sig.empty)}"
    if len(pos) < positional and not var_pos:
        raise JoptError(
            f"{key}: {shown} takes {len(pos)} positional argument(s), {positional} are passed; "
            f"expected {EXPECTED[section]}"
        )
    used = {p.name for p in pos[:positional]}
    unknown = sorted(n for n in given if n not in named - used)
    if unknown and not var_kw:
        raise JoptError(
            f"{key}: {shown} takes no argument(s) {unknown} (from {section}.options); "
            f"expected {EXPECTED[section]}"
        )
    taken = {n for n in optional if n in named - used}
    missing = []
    for p in params:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is not p.empty:
            continue
        if p.name in used:  # filled positionally
            continue
        if p.kind is p.POSITIONAL_ONLY or (p.name not in given and p.name not in taken):
            missing.append(p.name)
    if missing:
        raise JoptError(
            f"{key}: {shown} needs argument(s) {missing} that nothing passes (give them "
            f"under {section}.options); expected {EXPECTED[section]}"
        )
    return taken


def _function(config: Any, section: str) -> tuple[Callable[..., Any], inspect.Signature]:
    """The function ``<section>.name`` refers to and its signature (a class is refused)."""
    key, ref = f"{section}.name", getattr(config, section).name
    fn = resolve(key, ref, config.code_path)
    if inspect.isclass(fn):
        raise JoptError(f"{key}: {ref} is a class; expected {EXPECTED[section]}")
    return fn, _signature(key, ref, fn, section)


# -- data ---------------------------------------------------------------------------------------


def data_function(config: Any) -> Callable[..., Any]:
    """The checked data function of ``data.name`` (not called)."""
    d = config.data
    fn, sig = _function(config, "data")
    _check_call("data.name", d.name, sig, "data", given=tuple(d.options), optional=("seed",))
    return fn


# -- loss ---------------------------------------------------------------------------------------


def user_loss(config: Any) -> Callable[..., Any]:
    """``fn`` of ``loss.name`` with ``loss.options`` bound: ``(outputs, targets) -> (b,)``."""
    loss = config.loss
    fn, sig = _function(config, "loss")
    _check_call("loss.name", loss.name, sig, "loss", positional=2, given=tuple(loss.options))
    out = functools.partial(fn, **loss.options) if loss.options else fn
    return out


def check_loss_output(spec: Any, num_outputs: int, regression_shape: tuple[int, ...]) -> None:
    """Trace the loss once on shapes (nothing runs): per-example float losses, one line if not."""
    import jax
    import jax.numpy as jnp

    b = 2
    outputs = jax.ShapeDtypeStruct((b, num_outputs), jnp.float32)
    if spec.task == "classification":
        targets = jax.ShapeDtypeStruct((b, spec.num_classes), jnp.float32)
    else:
        targets = jax.ShapeDtypeStruct((b, *regression_shape), jnp.float32)
    fn = spec.per_example()
    try:
        jax.eval_shape(fn, outputs, targets)
    except JoptError as e:
        raise JoptError(f"loss.name: {e}") from None
    except Exception as e:
        raise JoptError(
            f"loss.name: {spec.loss} fails on outputs {list(outputs.shape)} and targets "
            f"{list(targets.shape)} at {_where(e)}: {_one_line(e)}"
        ) from None


# -- model --------------------------------------------------------------------------------------


def _framework(obj: Any, is_class: bool) -> str | None:
    """``linen``, ``nnx``, ``equinox`` for a module class (or instance), else None."""
    import flax.linen as nn

    test = issubclass if is_class else isinstance
    if test(obj, nn.Module):
        return "linen"
    with contextlib.suppress(ImportError):
        from flax import nnx

        if test(obj, nnx.Module):
            return "nnx"
    with contextlib.suppress(ImportError):
        import equinox as eqx

        if test(obj, eqx.Module):
            return "equinox"
    return None


def model_target(config: Any) -> tuple[Any, str | None, set[str]]:
    """``(callable, framework or None for a factory, runner arguments it takes)``, checked."""
    m, ref = config.model, config.model.name
    target = resolve("model.name", ref, config.code_path)
    is_class = inspect.isclass(target)
    framework = _framework(target, True) if is_class else None
    if is_class and framework is None:
        raise JoptError(
            f"model.name: {ref} is a class but not a flax linen, flax NNX or equinox Module; "
            f"expected {EXPECTED['model']}"
        )
    if (list(m.hidden), m.activation) != ([128], "relu"):
        raise JoptError(
            "model.hidden and model.activation configure the built-in models; give "
            f"{ref}'s arguments under model.options"
        )
    for name in RUNNER_ARGS:
        if name in m.options:
            raise JoptError(
                f"model.options.{name} is passed by the runner (where {ref} takes it); remove it"
            )
    sig = _signature("model.name", ref, target, "model")
    skip = ("parent", "name") if framework == "linen" else ()
    optional = ("num_outputs", "input_shape", "dropout", "rngs", "key")
    taken = _check_call(
        "model.name", ref, sig, "model", given=tuple(m.options), optional=optional, skip=skip
    )
    if config.regularization.dropout and "dropout" not in taken:
        raise JoptError(
            f"regularization.dropout is {config.regularization.dropout} but {ref} takes no "
            "'dropout' argument; set it to 0 or add the argument"
        )
    if framework == "linen" and "train" not in inspect.signature(target.__call__).parameters:
        raise JoptError(f"model.name: {ref}.__call__ must accept (x, train)")
    return target, framework, taken


def build_model(config: Any, data: Any, precision: Any) -> Any:
    """The model ``setup`` holds: a linen module (through ``jopt.models.make_model``), or an
    NNX/equinox module through ``jopt.models.adapt`` (parameters from the init key)."""
    from jopt.models import make_model

    target, framework, taken = model_target(config)
    kwargs = dict(config.model.options)
    runner = {
        "num_outputs": int(data.num_outputs),
        "input_shape": tuple(int(s) for s in data.input_shape),
        "dropout": float(config.regularization.dropout),
    }
    kwargs.update({k: v for k, v in runner.items() if k in taken})
    ref = config.model.name
    if framework == "linen":
        return make_model(_construct(ref, target, kwargs), num_outputs=1, precision=precision)

    def build(key):
        extra = {}
        if "rngs" in taken:
            from flax import nnx

            extra["rngs"] = nnx.Rngs(key)
        if "key" in taken:
            extra["key"] = key
        return _construct(ref, target, {**kwargs, **extra})

    build.__name__ = build.__qualname__ = ref  # the adapter's messages name the reference
    import jax

    if framework is None:  # a factory: what it returns decides (built once here)
        probe = _probe_instance(ref, build, jax)
        framework = _framework(probe, False)
        if framework is None:
            raise JoptError(
                f"model.name: {ref} returned {type(probe).__name__}, not a flax linen, "
                "flax NNX or equinox module instance"
            )
        if framework == "linen":
            return make_model(probe, num_outputs=1, precision=precision)
    from jopt.models import adapt, precision_policy

    try:
        model = adapt(build, framework=framework)
        if precision is not None and precision_policy(precision).policy != "float32":
            raise JoptError(
                f"train.precision {precision_policy(precision).policy} applies to flax linen "
                f"models; {framework} modules set their own dtypes (use float32)"
            )
        sample = jax.ShapeDtypeStruct((1, *data.input_shape), jax.numpy.float32)
        model.check(sample)
    except JoptError as e:
        text = str(e)
        raise JoptError(
            text if text.startswith("model.name:") else f"model.name: {ref}: {text}"
        ) from None
    return model


def _probe_instance(ref: str, build: Callable[[Any], Any], jax: Any) -> Any:
    try:
        return build(jax.random.key(0))
    except JoptError:
        raise
    except Exception as e:
        raise JoptError(
            f"model.name: building {ref} failed at {_where(e)}: {_one_line(e)}"
        ) from None


def _construct(ref: str, target: Any, kwargs: dict[str, Any]) -> Any:
    try:
        return target(**kwargs)
    except JoptError:
        raise
    except Exception as e:
        raise JoptError(
            f"model.name: {ref}({', '.join(sorted(kwargs))}) failed at {_where(e)}: {_one_line(e)}"
        ) from None


# -- validation ---------------------------------------------------------------------------------


def check_references(config: Any) -> None:
    """Import every user-code reference of ``config`` and check its signature (``jopt
    validate`` and ``jopt run`` do this before anything else; data is loaded later)."""
    if is_reference(config.data.name):
        data_function(config)
    if is_reference(config.loss.name):
        user_loss(config)
        if config.diagnostics.sharpness_every:
            raise JoptError(
                "diagnostics.sharpness_every uses a built-in loss; it cannot follow loss.name "
                f"{config.loss.name!r} (set it to 0)"
            )
    elif config.loss.options:
        raise JoptError(
            "loss.options are keyword arguments of a user loss (loss.name: 'module:function'); "
            f"the built-in loss {config.loss.name!r} takes none"
        )
    if is_reference(config.model.name):
        model_target(config)


def with_code_path(raw: Any, base_dir: str | None) -> Any:
    """``raw`` (a config mapping read from a file in ``base_dir``) with ``code_path`` made
    absolute, and set to ``[base_dir]`` when it is empty and a section names user code."""
    if base_dir is None or not isinstance(raw, dict):
        return raw
    base = os.path.abspath(base_dir)
    paths = raw.get("code_path")
    if isinstance(paths, list) and paths:
        raw["code_path"] = [
            os.path.normpath(os.path.join(base, p)) if isinstance(p, str) else p for p in paths
        ]
    elif paths in (None, []):
        sections = [raw.get(k) for k in SECTIONS]
        if any(isinstance(s, dict) and is_reference(s.get("name")) for s in sections):
            raw["code_path"] = [base]
    return raw

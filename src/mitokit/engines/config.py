"""Training configs: a YAML file, ``--set key=value`` overrides, validation against the defaults.

A config has these top-level keys::

    task: classifier          # selects the Task (see mitokit.engines.task)
    plugins: [my_tasks]       # optional: modules imported first (they register their own tasks)
    model: {...}              # checked against the task's model_defaults
    data: {...}               # checked against the task's data_defaults
    optim: {...}              # OPTIM_DEFAULTS
    train: {...}              # TRAIN_DEFAULTS

The engine's sections (defaults in :data:`OPTIM_DEFAULTS`, :data:`TRAIN_DEFAULTS`)::

    optim.name           adam | sgd
    optim.lr             learning rate (1e-5: the patch-classifier paper's Adam setting)
    optim.weight_decay   L2 penalty
    optim.momentum       SGD momentum
    optim.betas          Adam betas [b1, b2]
    optim.step_size      step LR: lr *= gamma every step_size epochs; 0 = constant lr
    optim.gamma          step LR factor
    train.epochs         epochs to run (a resumed run may raise it)
    train.batch_size     items per step and per process (DDP: effective = x world size)
    train.seed           seed of everything random (model init, shuffling, dropout, workers)
    train.patience       early stopping: epochs without val-loss improvement; 0 = off
    train.min_delta      smallest val-loss decrease that counts as an improvement
    train.num_workers    DataLoader worker processes
    train.device         auto | cpu | cuda
    train.amp            auto | bf16 | off: bf16 autocast, on CUDA only (auto: where supported)
    train.channels_last  auto | true | false: channels_last model and 4D inputs (auto: CUDA)
    train.grad_clip      max gradient norm; 0 = no clipping
    train.log_every      steps between loss updates on the progress bar; 0 = none
    train.deterministic  deterministic algorithms (bit-for-bit on CPU); false: cudnn benchmark
    train.max_minutes    wall-clock budget of this invocation: no epoch starts that would end past
                         it (judged by the last epoch's time); 0 = none; --resume continues
    train.save_every     epochs between checkpoints of last/ and state/ (the final epoch always;
                         best/ whenever validation improves)
    train.out            run folder (default runs/<task>; --out overrides)

Every key of every section has a default, so a config names only what differs. Any key that is not
a default's key is an error that lists the valid ones and suggests the close match (a typo must
never be silently ignored, it would train the wrong experiment). Values must have the default's
type (an int is accepted where a float is expected).

Numbers such as ``1e-5`` are read as floats: plain YAML 1.1 (``yaml.safe_load``) reads them as
strings, a trap for learning rates.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mitokit.errors import MitokitError, input_error

#: The optimizer section. ``lr`` 1e-5 with Adam is the patch-classifier paper's setting;
#: ``step_size`` 0 turns the step LR schedule off (else lr *= gamma every step_size epochs).
OPTIM_DEFAULTS: dict[str, Any] = {
    "name": "adam",
    "lr": 1e-5,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "betas": [0.9, 0.999],
    "step_size": 0,
    "gamma": 0.1,
}

#: The training section.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "seed": 0,
    "patience": 0,
    "min_delta": 0.0,
    "num_workers": 0,
    "device": "auto",
    "amp": "auto",
    "channels_last": "auto",
    "grad_clip": 0.0,
    "log_every": 10,
    "deterministic": True,
    "max_minutes": 0.0,
    "save_every": 1,
    "out": None,
}

SECTIONS = ("task", "plugins", "model", "data", "optim", "train")

_CHOICES: dict[str, tuple[str, ...]] = {
    "optim.name": ("adam", "sgd"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.amp": ("auto", "bf16", "off"),
}
_NON_NEGATIVE = {
    "optim.weight_decay",
    "optim.momentum",
    "optim.step_size",
    "train.seed",
    "train.patience",
    "train.min_delta",
    "train.num_workers",
    "train.grad_clip",
    "train.log_every",
    "train.max_minutes",
}
_POSITIVE = {"optim.lr", "optim.gamma", "train.epochs", "train.batch_size", "train.save_every"}


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-5`` (no dot) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str) -> Any:
    """A ``--set`` value as YAML would read it: ``3`` int, ``1e-4`` float, ``true`` bool ...

    Raises:
        MitokitError: The text is not valid YAML.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise input_error(None, f"--set value {text!r} is not valid YAML: {exc}") from None


def parse_overrides(overrides: Sequence[str]) -> list[tuple[tuple[str, ...], Any, str]]:
    """``["a.b=1", ...]`` as ``[(("a", "b"), 1, "--set a.b=1"), ...]``.

    Raises:
        MitokitError: An override without ``=`` or with an empty key.
    """
    parsed = []
    for text in overrides:
        key, sep, raw = str(text).partition("=")
        path = tuple(part.strip() for part in key.split("."))
        if not sep or not all(path):
            raise input_error(None, f"--set {text!r}: expected key=value, e.g. train.epochs=5")
        parsed.append((path, parse_value(raw), f"--set {text}"))
    return parsed


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML config file (an empty file is an empty mapping).

    Raises:
        MitokitError: Missing or unreadable file, invalid YAML, or not a mapping at the top.
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError) as exc:
        raise input_error(path, f"unreadable config: {exc}") from None
    except yaml.YAMLError as exc:
        raise input_error(path, f"invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise input_error(path, f"a config must be a mapping of sections, got {_kind(data)}")
    return data


def load_config(
    config: str | os.PathLike | Mapping[str, Any],
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Read, override, validate and complete a training config.

    Args:
        config: A YAML file or an already-read mapping.
        overrides: ``"section.key=value"`` strings (``--set``); values are parsed as YAML.

    Returns:
        The resolved config: every section complete, plain JSON-compatible values.

    Raises:
        MitokitError: Missing file, bad YAML, unknown task, unknown key (the message lists the
            valid keys and the close match) or a value of the wrong type or range.
    """
    if isinstance(config, Mapping):
        source: str | None = None
        user = copy.deepcopy(dict(config))
    else:
        source = os.fspath(config)
        user = read_yaml(config)
    sets = parse_overrides(overrides)

    # task and plugins first: they decide which model/data keys are valid.
    for path, value, _ in sets:
        if path[0] in ("task", "plugins") and len(path) == 1:
            user[path[0]] = value
    plugins = user.get("plugins") or []
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise input_error(source, f"plugins must be a list of module names, got {plugins!r}")
    import_plugins(plugins, source=source)
    task_name = user.get("task")
    if task_name is None:
        from mitokit.engines.task import known_tasks

        raise input_error(source, f"no task given; known tasks: {', '.join(known_tasks())}")
    if not isinstance(task_name, str):
        raise input_error(source, f"task must be a name, got {task_name!r}")
    from mitokit.engines.task import get_task

    task = get_task(task_name)

    defaults = config_defaults(task)
    cfg = _merge(defaults, {k: v for k, v in user.items()}, prefix="", source=source)
    for path, value, origin in sets:
        cfg = _merge(defaults, _nest(path, value), prefix="", source=origin, base=cfg)
    cfg["task"] = task_name
    cfg["plugins"] = list(plugins)
    _check_ranges(cfg, source)
    return json.loads(json.dumps(cfg, default=_json_default))


def config_defaults(task: Any) -> dict[str, Any]:
    """The complete default config for ``task`` (an object with model/data defaults)."""
    return {
        "task": task.name,
        "plugins": [],
        "model": copy.deepcopy(dict(task.model_defaults)),
        "data": copy.deepcopy(dict(task.data_defaults)),
        "optim": copy.deepcopy(OPTIM_DEFAULTS),
        "train": copy.deepcopy(TRAIN_DEFAULTS),
    }


def import_plugins(modules: Sequence[str], *, source: str | None = None) -> None:
    """Import the modules a config's ``plugins`` names (they register their tasks)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise input_error(source, f"cannot import plugin {name!r}: {exc}") from None


def save_resolved(cfg: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write the resolved config as indented JSON, atomically."""
    from mitokit.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(cfg, indent=2, default=_json_default) + "\n")


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def _merge(
    defaults: Mapping[str, Any],
    user: Mapping[str, Any],
    *,
    prefix: str,
    source: str | None,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``user`` over ``base`` (default: ``defaults``), key and type checked against ``defaults``."""
    out = copy.deepcopy(dict(defaults if base is None else base))
    for key, value in user.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            raise input_error(source, _unknown(name, prefix, defaults))
        default = defaults[key]
        if isinstance(default, Mapping) and (default or name in ("model", "data")):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise input_error(source, f"{name} must be a mapping of keys, got {_kind(value)}")
            out[key] = _merge(default, value, prefix=f"{name}.", source=source, base=out[key])
        else:
            out[key] = _check_type(name, default, value, source)
    return out


def _unknown(name: str, prefix: str, defaults: Mapping[str, Any]) -> str:
    valid = sorted(str(k) for k in defaults)
    key = name[len(prefix) :]
    close = difflib.get_close_matches(key, valid, n=1)
    where = f"of {prefix[:-1]}" if prefix else "(sections)"
    what = "key" if prefix else "section"
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return f"unknown {what} {name}{hint}; valid keys {where}: {', '.join(valid) or 'none'}"


def _check_type(name: str, default: Any, value: Any, source: str | None) -> Any:
    if name == "train.channels_last":
        if value == "auto" or isinstance(value, bool):
            return value
        raise input_error(source, f"{name} must be auto, true or false, got {value!r}")
    if name == "train.amp" and isinstance(value, bool):  # YAML 1.1 reads `off` as false
        return "bf16" if value else "off"
    if name == "train.out":
        if value is None or isinstance(value, str):
            return value
        raise input_error(source, f"{name} must be a folder name, got {_kind(value)}")
    if default is None:
        return value
    expected: Callable[[Any], bool]
    if isinstance(default, bool):
        expected, what = (lambda v: isinstance(v, bool)), "true or false"
    elif isinstance(default, int):
        expected, what = (lambda v: isinstance(v, int) and not isinstance(v, bool)), "an integer"
    elif isinstance(default, float):
        expected, what = (
            (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
            ("a number"),
        )
    elif isinstance(default, str):
        expected, what = (lambda v: isinstance(v, str)), "a string"
    elif isinstance(default, (list, tuple)):
        expected, what = (lambda v: isinstance(v, (list, tuple))), "a list"
    elif isinstance(default, Mapping):
        expected, what = (lambda v: isinstance(v, Mapping)), "a mapping"
    else:
        return value
    if not expected(value):
        raise input_error(source, f"{name} must be {what}, got {_kind(value)} {value!r}")
    if isinstance(default, float):
        value = float(value)
        if not math.isfinite(value):
            raise input_error(source, f"{name} must be finite, got {value!r}")
    if name in _CHOICES:
        value = value.lower()
        if value not in _CHOICES[name]:
            raise input_error(
                source, f"{name} must be one of {', '.join(_CHOICES[name])}, got {value!r}"
            )
    if isinstance(value, tuple):
        value = list(value)
    return value


def _check_ranges(cfg: Mapping[str, Any], source: str | None) -> None:
    for name in sorted(_NON_NEGATIVE | _POSITIVE):
        section, key = name.split(".")
        value = cfg[section][key]
        if name in _POSITIVE and not value > 0:
            raise input_error(source, f"{name} must be > 0, got {value!r}")
        if name in _NON_NEGATIVE and not value >= 0:
            raise input_error(source, f"{name} must be >= 0, got {value!r}")
    betas = cfg["optim"]["betas"]
    if len(betas) != 2 or not all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas
    ):
        raise input_error(source, f"optim.betas must be two numbers in [0, 1), got {betas!r}")
    cfg["optim"]["betas"] = [float(b) for b in betas]


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise MitokitError(f"config value of type {type(obj).__name__} is not plain data")

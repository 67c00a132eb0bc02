"""Engines: the one trainer every model uses, and the task contract it trains through.

``train(config)`` runs a config (YAML file or mapping; :mod:`mitokit.engines.config`) for the
:class:`Task` it names; multi-GPU and multi-node runs go through ``torchrun``
(:mod:`mitokit.engines.distributed`). ``SlidePredictor(predictor).run(slides, out)`` runs a trained
model over whole slides (:mod:`mitokit.engines.slide`). ``resolve_device(choice)`` turns a device
setting (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``) into a :class:`torch.device`
(:mod:`mitokit.engines.device`).
"""

from mitokit._lazy import lazy_getattr

# ``train`` is both a submodule and its main function: importing the function here binds the
# package attribute to the function for good (a later ``import mitokit.engines.train`` does not
# rebind it), so ``from mitokit.engines import train`` is always the function.
from mitokit.engines.train import TrainResult as TrainResult
from mitokit.engines.train import train as train

_LAZY = {
    "load_config": "mitokit.engines.config",
    "Task": "mitokit.engines.task",
    "TaskData": "mitokit.engines.task",
    "register_task": "mitokit.engines.task",
    "get_task": "mitokit.engines.task",
    "known_tasks": "mitokit.engines.task",
    "ShardedSampler": "mitokit.engines.distributed",
    "SlidePredictor": "mitokit.engines.slide",
    "resolve_device": "mitokit.engines.device",
}

__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = sorted([*_LAZY, "TrainResult", "train"])

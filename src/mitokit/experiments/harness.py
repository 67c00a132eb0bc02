"""The one harness every study and the demo run on: data, arms, training, rows, results.

A study compares *arms* (models that differ in one or two settings) on the same generated data:

1. its arguments are checked and recorded (:func:`arguments`: the data sizes, the epochs, the
   held-out slides and the device every study takes; :func:`scaled`, :func:`positive_int`);
2. a :class:`Study` opens the output folder (new or empty; removed again if the study fails)
   and sets the PyTorch threads;
3. :meth:`Study.tile_split` writes training data (seed ``seed``) and held-out test data (seed
   ``seed +`` :data:`HELDOUT_SEED_OFFSET`), and :meth:`Study.heldout_slides` held-out slides;
4. :meth:`Study.run_arms` trains each :class:`Arm` (its engine config's ``optim`` and ``train``
   sections the same for every arm: :func:`arm_engine`) through :func:`mitokit.engines.train`
   under ``runs/<name>`` and hands the :class:`Trained` run to the study's evaluation, which
   predicts on the held-out data only and returns the arm's result row; the weights are then
   pruned;
5. :meth:`Study.result` gathers the result (name, question, settings, the study's sections) and
   :meth:`Study.finish` writes the tables (CSV) and ``result.json``, with the run time.

Small runtime and file helpers (threads, the study folder, JSON, CSV, figures) live in
:mod:`~mitokit.experiments.study_io` and are re-exported here. The study modules
(:mod:`~mitokit.experiments.regression_study`, :mod:`~mitokit.experiments.soft_label_study`,
:mod:`~mitokit.experiments.detection_study`, :mod:`~mitokit.experiments.wss_study`) are recipes
over these steps; the demo (:mod:`mitokit.demo`) trains with the same functions. The library core
never imports this package.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypedDict

import numpy as np

from mitokit.errors import MitokitError
from mitokit.experiments.study_io import (
    Say,
    auc_or_none,
    figure,
    fmt,
    say,
    sha1,
    study_dir,
    torch_threads,
    write_csv,
    write_json,
)

#: Offset between a study's seed and the seed of its held-out test data.
HELDOUT_SEED_OFFSET = 1_000_003


# --------------------------------------------------------------------------------- settings


class RunSettings(TypedDict, total=False):
    """The keywords every study takes besides its own (defaults: :data:`RUN_DEFAULTS`).

    Attributes:
        seed: Seed of the training data, the split, the model initialisation and the draws;
            the held-out data use ``seed +`` :data:`HELDOUT_SEED_OFFSET` (0).
        scale: Multiplies the numbers of generated training and test items (1.0).
        device: ``auto``, ``cpu``, ``cuda`` ... (:func:`mitokit.engines.device.resolve_device`;
            ``auto``).
        threads: PyTorch CPU threads during the study (None: unchanged).
        keep_models: Keep each run's ``best/`` model (a ResNet-18 is about 45 MB); otherwise
            only its logs and configs stay (False).
    """

    seed: int
    scale: float
    device: str
    threads: int | None
    keep_models: bool


#: The defaults of :class:`RunSettings`.
RUN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "scale": 1.0,
    "device": "auto",
    "threads": None,
    "keep_models": False,
}


def arguments(
    values: Mapping[str, Any], *, train: str, test: str, minimum: tuple[int, int] = (1, 1)
) -> SimpleNamespace:
    """A study's arguments (its ``locals()`` on entry) as attributes, with the settings every
    study shares checked and derived.

    Every study takes its :class:`RunSettings` as ``**run`` and ``epochs``, and names its
    numbers of training and test items ``train`` and ``test`` (``n_train_tiles``,
    ``n_patches`` ...); a study that scores held-out slides takes ``slides``.

    Args:
        values: The study's ``locals()`` on entry.
        train: The argument holding the number of training items (before ``scale``).
        test: The argument holding the number of held-out test items (before ``scale``).
        minimum: The fewest training and test items.

    Returns:
        The arguments, the run settings among them (defaults filled in), plus ``n_train`` and
        ``n_test`` (scaled), ``counts`` (both under their argument names, as the result
        records them), ``epochs`` (checked), ``n_slides`` (0 without ``slides``) and ``dev``:
        the device, resolved by :func:`mitokit.engines.device.resolve_device`, as a string for
        configs and results.

    Raises:
        TypeError: A run setting that :class:`RunSettings` does not know.
        MitokitError: A bad number, scale or device.
    """
    from mitokit.engines.device import resolve_device

    own = {k: v for k, v in values.items() if k != "run"}
    run = values.get("run", {})
    unknown = sorted(set(run) - set(RUN_DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    a = SimpleNamespace(**own, **{**RUN_DEFAULTS, **run})
    a.n_train = scaled(values[train], a.scale, train, minimum=minimum[0])
    a.n_test = scaled(values[test], a.scale, test, minimum=minimum[1])
    a.counts = {train: a.n_train, test: a.n_test}
    a.epochs = positive_int(a.epochs, "epochs")
    slides = values.get("slides", 0)
    a.n_slides = positive_int(slides, "slides") if slides else 0
    a.dev = str(resolve_device(a.device))
    return a


def scaled(n: int, scale: float, name: str, minimum: int = 1) -> int:
    """``n * scale`` rounded, at least ``minimum``; a user error for a bad ``n`` or ``scale``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise MitokitError(f"{name} must be an integer >= {minimum}, got {n!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise MitokitError(f"scale must be a positive number, got {scale!r}")
    return max(minimum, round(int(n) * float(scale)))


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int; a user error unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise MitokitError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def params(obj: Any) -> Any:
    """A dataclass as a dict (anything else unchanged), for the recorded settings."""
    return asdict(obj) if is_dataclass(obj) else obj


def adam(lr: float) -> dict[str, Any]:
    """The ``optim`` section of Adam at ``lr`` with weight decay 1e-4."""
    return {"name": "adam", "lr": float(lr), "weight_decay": 1e-4}


def sgd(lr: float, **schedule: Any) -> dict[str, Any]:
    """The ``optim`` section of SGD at ``lr`` (momentum 0.9, weight decay 1e-4), then
    ``schedule`` (``step_size``, ``gamma``)."""
    return {"name": "sgd", "lr": float(lr), "momentum": 0.9, "weight_decay": 1e-4, **schedule}


def engine_settings(
    optim: Mapping[str, Any], *, epochs: int, batch_size: int, seed: int, device: str
) -> dict[str, Any]:
    """The ``optim`` and ``train`` sections of an engine config."""
    return {
        "optim": dict(optim),
        "train": train_section(epochs=epochs, batch_size=batch_size, seed=seed, device=device),
    }


def arm_engine(a: SimpleNamespace, optim: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`engine_settings` of checked arguments ``a`` (``epochs``, ``batch_size``, ``seed``,
    ``dev``), the same for every arm of a study; Adam at ``a.lr`` unless ``optim`` is given."""
    return engine_settings(
        adam(a.lr) if optim is None else optim,
        epochs=a.epochs,
        batch_size=int(a.batch_size),
        seed=int(a.seed),
        device=a.dev,
    )


def train_section(*, epochs: int, batch_size: int, seed: int, device: str) -> dict[str, Any]:
    """The ``train`` section of an engine config: no workers, no step logging."""
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
        "num_workers": 0,
        "log_every": 0,
    }


def table_rows(
    models: Mapping[str, Mapping[str, Any]],
    key: str,
    columns: Sequence[str | Callable[[Mapping[str, Any]], Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """One table row per model: its name under ``key``, then ``columns`` in order.

    Each column is a key of the model's result, or a function of the result returning
    several columns at once (nested figures, the held-out slide scores).
    """
    rows = []
    for name, m in models.items():
        row: dict[str, Any] = {key: name}
        for col in columns:
            row.update({col: m[col]} if isinstance(col, str) else col(m))
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ training


def train_run(cfg: Mapping[str, Any], out: Path) -> tuple[Any, float]:
    """Train ``cfg`` through the engine into ``out``; the result and the seconds it took."""
    from mitokit.engines import train

    t0 = time.perf_counter()
    result = train(cfg, out=out, progress=False)
    return result, time.perf_counter() - t0


def prune_run(run_dir: str | os.PathLike, *, keep_best: bool = True) -> None:
    """Delete the weights a finished run no longer needs: ``state/``, ``last/`` (and ``best/``).

    A ResNet-18 run folder holds the weights four times over (best, last, and the resumable
    state with Adam's two moments), about 225 MB; its logs and configs stay.
    """
    import shutil

    run = Path(run_dir)
    for name in ("state", "last") if keep_best else ("state", "last", "best"):
        shutil.rmtree(run / name, ignore_errors=True)


def write_tiles(out: Path, *, n: int, seed: int, size: int, scene: Any) -> dict[str, Any]:
    """``n`` generated tiles of side ``size`` with every label kind; the dataset's manifest."""
    from mitokit.data.synthetic.export import write_tile_dataset
    from mitokit.data.synthetic.generate import generate_tiles

    tiles = ((t.image, t.cells) for t in generate_tiles(n, seed=seed, size=size, params=scene))
    return write_tile_dataset(out, tiles, seed=seed, parameters={"size": size, "scene": scene})


@dataclass(frozen=True)
class TileSplit:
    """Generated training and held-out test tiles of a study.

    Attributes:
        train_dir: ``data/train``: images and every label kind.
        test_dir: ``data/test``, generated with the held-out seed.
        manifest: The test set's manifest (its ``objects`` carry each cell's latent ``m``).
        test_names: The test images' file names, sorted.
    """

    train_dir: Path
    test_dir: Path
    manifest: dict[str, Any]
    test_names: list[str]

    def sha1s(self, folder: Path, names: Iterable[str]) -> list[str]:
        """Sorted SHA-1 of the images ``names`` under ``folder/images``."""
        return sorted(sha1(folder / "images" / n) for n in names)


@dataclass(frozen=True)
class Arm:
    """One model of a study: its run name, its engine config and what to announce.

    Attributes:
        name: Run folder under ``runs/`` and the key of its result row.
        config: The engine config.
        announce: The progress line before training.
        facts: What the evaluation needs to know of the arm (its ratio, its task ...).
    """

    name: str
    config: Mapping[str, Any]
    announce: str
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trained:
    """A trained arm: the engine's result, the training seconds, and where it lies.

    Attributes:
        result: The engine's :class:`~mitokit.engines.TrainResult`.
        seconds: Training time.
        model: The model folder relative to the study folder when models are kept, else None.
    """

    result: Any
    seconds: float
    model: str | None

    def info(self) -> dict[str, Any]:
        """The run's ``info.json`` (what the task recorded of its data)."""
        return json.loads((self.result.out_dir / "info.json").read_text(encoding="utf-8"))

    def resolved_config(self) -> dict[str, Any]:
        """The run's ``config.resolved.json`` (the config with every default filled in)."""
        path = self.result.out_dir / "config.resolved.json"
        return json.loads(path.read_text(encoding="utf-8"))


class Study:
    """One run of a study: its folder, threads, progress messages, arms and result.

    Use as a context manager: entering creates the folder (new or empty) and sets the PyTorch
    threads; a failure inside removes what the study wrote.

    Args:
        label: Prefix of the progress messages (``reg-vs-regns`` ...).
        out_dir: The study folder.
        seed: The study's seed (training data); the held-out data use ``seed +``
            :data:`HELDOUT_SEED_OFFSET`.
        threads: PyTorch CPU threads during the study (None: unchanged).
        progress: Called with progress messages.
        keep_models: Keep each run's ``best/`` model; otherwise only logs and configs stay.
    """

    def __init__(
        self,
        label: str,
        out_dir: str | os.PathLike,
        *,
        seed: int,
        threads: int | None,
        progress: Say,
        keep_models: bool = False,
    ) -> None:
        self.label = label
        self.seed = int(seed)
        self.test_seed = self.seed + HELDOUT_SEED_OFFSET
        self.keep_models = bool(keep_models)
        self._out_dir, self._threads, self._progress = out_dir, threads, progress
        self._stack = contextlib.ExitStack()
        self._t0 = time.perf_counter()
        self.out = Path(out_dir)
        self.device: str | None = None
        self.counts: dict[str, int] = {}

    @classmethod
    def of(cls, label: str, out_dir: str | os.PathLike, a: SimpleNamespace, progress: Say) -> Study:
        """The study of arguments ``a`` checked by :func:`arguments` (their ``seed``,
        ``threads``, ``keep_models``, the resolved device ``dev`` and the data ``counts``)."""
        kept = {key: getattr(a, key) for key in ("seed", "threads", "keep_models")}
        study = cls(label, out_dir, progress=progress, **kept)
        study.device, study.counts = a.dev, dict(a.counts)
        return study

    def settings(self, specific: Mapping[str, Any]) -> dict[str, Any]:
        """The settings a result records: the seeds and data counts, then ``specific``, then
        device and threads."""
        return {
            "seed": self.seed,
            "test_seed": self.test_seed,
            **self.counts,
            **specific,
            "device": self.device,
            "threads": self._threads,
        }

    def result(
        self, study: str, question: str, settings: Mapping[str, Any], **sections: Any
    ) -> dict[str, Any]:
        """A study's result: its name, its question, its :meth:`settings` (``settings``: those
        of this study), then ``sections`` in order."""
        return {
            "study": study,
            "question": question,
            "settings": self.settings(settings),
            **sections,
        }

    def split(self, **facts: Any) -> dict[str, Any]:
        """The ``split`` a result records: the training and test seeds, then ``facts``."""
        return {"train_seed": self.seed, "test_seed": self.test_seed, **facts}

    def __enter__(self) -> Study:
        with contextlib.ExitStack() as stack:
            self.out = stack.enter_context(study_dir(self._out_dir))
            stack.enter_context(torch_threads(self._threads))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        return self._stack.__exit__(*exc)

    def say(self, text: str) -> None:
        """A progress message, prefixed with the study's label."""
        say(self._progress, f"{self.label}: {text}")

    def tile_split(
        self, *, n_train: int, n_test: int, size: int, scene: Any, noun: str = "tiles"
    ) -> TileSplit:
        """Training and held-out test tiles under ``data/train`` and ``data/test``, announced
        as ``noun``."""
        self.say(f"generating {n_train} training and {n_test} test {noun}")
        train_dir, test_dir = self.out / "data" / "train", self.out / "data" / "test"
        write_tiles(train_dir, n=n_train, seed=self.seed, size=size, scene=scene)
        manifest = write_tiles(test_dir, n=n_test, seed=self.test_seed, size=size, scene=scene)
        names = sorted(p.name for p in (test_dir / "images").glob("*.png"))
        return TileSplit(train_dir, test_dir, manifest, names)

    def heldout_slides(self, n: int, size: int) -> list[Path]:
        """``n`` held-out generated slides under ``data/slides`` (none for 0)."""
        from mitokit.experiments.heldout_slides import write_heldout_slides

        return write_heldout_slides(
            self.out / "data" / "slides", n=n, size=int(size), seed=self.seed, progress=self.say
        )

    def score_slides(
        self, name: str, trained: Trained, slides: Sequence[Path], **kwargs: Any
    ) -> dict[str, Any] | None:
        """:func:`~mitokit.experiments.heldout_slides.slide_point_scores` (None: no slides)."""
        from mitokit.experiments.heldout_slides import slide_point_scores

        if not slides:
            return None
        self.say(f"{name} over {len(slides)} held-out slides")
        return slide_point_scores(trained.result.model_dir, slides, **kwargs)

    def train(self, name: str, cfg: Mapping[str, Any]) -> Trained:
        """Train ``cfg`` under ``runs/<name>``."""
        result, seconds = train_run(cfg, self.out / "runs" / name)
        model = os.path.relpath(result.model_dir, self.out) if self.keep_models else None
        return Trained(result, seconds, model)

    def run_arms(
        self, arms: Iterable[Arm], evaluate: Callable[[Arm, Trained], dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Train each arm, evaluate it, prune its weights; the result rows by arm name."""
        rows: dict[str, dict[str, Any]] = {}
        for arm in arms:
            self.say(arm.announce)
            trained = self.train(arm.name, arm.config)
            rows[arm.name] = evaluate(arm, trained)
            prune_run(trained.result.out_dir, keep_best=self.keep_models)
        return rows

    def finish(
        self, result: dict[str, Any], tables: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> dict[str, Any]:
        """Add the run time to ``result``; write ``tables`` (file name -> rows) and
        ``result.json``; return ``result``."""
        for name, rows in tables.items():
            write_csv(self.out / name, rows)
        result["seconds"] = round(time.perf_counter() - self._t0, 1)
        write_json(self.out / "result.json", result)
        return result


__all__ = [
    "HELDOUT_SEED_OFFSET",
    "RUN_DEFAULTS",
    "Arm",
    "RunSettings",
    "Say",
    "Study",
    "TileSplit",
    "Trained",
    "adam",
    "arguments",
    "arm_engine",
    "auc_or_none",
    "engine_settings",
    "figure",
    "fmt",
    "params",
    "positive_int",
    "prune_run",
    "scaled",
    "sgd",
    "say",
    "sha1",
    "study_dir",
    "table_rows",
    "torch_threads",
    "train_run",
    "train_section",
    "write_csv",
    "write_json",
    "write_tiles",
]

"""Sampling speed and agreement of DDPM, DDIM and DPM-Solver on transitions; prints one JSON.

For one diffusion model: transition sets per second of the full DDPM chain (T steps) and of
fast samplers at a few steps (25 and 50 by default): DDIM and DPM-Solver++ (deterministic
solvers of the probability-flow ODE), SDE-DPM-Solver++ and DDPM itself on a strided chain
(stochastic, DDPM's own equation); the network evaluations per image,
and, with the sets scored by a patch-classifier ensemble, each sampler's mean score-vs-condition
curve and its largest gap to the DDPM curve (the fast samplers should not change what the
classifier sees), with the standard error of that gap over the sets (``max_gap_se``: the sets
are paired, so a gap within about two standard errors is not resolved by this many sets).
Every sampler generates the same sets (same seed, same starting noise). A warm-up on the timed
runs' batch shapes comes first (cuDNN autotuning; compilation with ``--compile``);
``--scores FILE.npz`` keeps the per-set scores and the run's settings, so runs with other seeds
can be pooled, and ``--reference FILE.npz`` takes the full DDPM chain's scores from such a file
instead of sampling it again (the file's model weights, classifier, seed, sets, conditions and
guidance must be this run's: the full chain's images depend on nothing else).

The stochastic samplers' strided steps draw the full chain's noise of their interval
(:mod:`mitokit.interpret.sampling`, "Coupled strides"), so a DDPM or SDE-DPM-Solver++ chain of
25 steps is a coarse view of the very 1000-step chain it is compared with, and their paired
difference measures the discretisation with a much smaller standard error than independent
draws would give. The deterministic solvers share only the starting noise.

Without ``--model`` a tiny model is trained first on synthetic 32x32 cell patches (a minute on
CPU: timings then describe the tiny network, and its curves are those of an undertrained model);
without ``--classifier`` a quick tiny patch classifier is trained on the same patches.

Usage::

    python benchmarks/diffusion_sampling.py                          # tiny, CPU
    python benchmarks/diffusion_sampling.py --model runs/diffusion \\
        --classifier runs/patch-classifier --sets 100 --device cuda
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _quick_models(work: Path, *, size: int, n: int, epochs: int, seed: int) -> tuple[Path, Path]:
    """Train a tiny diffusion model and a tiny classifier on synthetic patches."""
    from mitokit.data.synthetic import generate_patches
    from mitokit.data.synthetic.export import write_patch_dataset
    from mitokit.engines.train import train
    from mitokit.models.diffusion import TINY_MODEL

    batch = generate_patches(n, seed=seed, size=size)
    cells = work / "cells"
    cells.mkdir(parents=True)
    write_patch_dataset(cells, batch.images, batch.cells, seed=seed)
    labels = str(cells / "labels.csv")
    dpm = train(
        {
            "task": "diffusion",
            "model": {**TINY_MODEL, "sample_size": size, "ema_decay": 0.99},
            "data": {"labels": labels},
            "optim": {"lr": 1e-3},
            "train": {"epochs": epochs, "batch_size": 16, "device": "cpu", "seed": seed},
        },
        out=work / "dpm",
        progress=False,
    )
    clf = train(
        {
            "task": "patch_classifier",
            "model": {"input_size": size},
            "data": {"labels": labels, "folds": 0, "batch_size": 16},
            "optim": {"lr": 1e-3},
            "train": {"epochs": 2, "batch_size": 16, "device": "cpu", "seed": seed},
        },
        out=work / "clf",
        progress=False,
    )
    return dpm.model_dir, clf.model_dir


def _weights_digest(folder: str) -> str:
    """sha256 over a model folder's weight files (what the images depend on)."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).rglob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


def _reference(path: str, key: str, settings: dict) -> tuple[np.ndarray, dict]:
    """The per-set scores and the record of ``key`` in a ``--scores`` file of the same settings."""
    with np.load(path) as z:
        if "settings" not in z.files or key not in z.files:
            raise SystemExit(f"{path}: no settings record or no {key} scores (see --scores)")
        saved = json.loads(str(z["settings"]))
        scores = z[key]
    for name, value in settings.items():
        if saved.get(name) != value:
            raise SystemExit(
                f"{path}: {name} is {saved.get(name)!r}, this run's is {value!r}; "
                "the reference must come from the same model, classifier and sets"
            )
    return scores, saved["runs"][key]


def _compare(per_set: dict[str, np.ndarray], ref_key: str) -> dict[str, dict]:
    """Each sampler's mean-curve gap to ``ref_key``'s, with its paired standard error.

    The sets are paired (same starting noise; the stochastic samplers the same noise path): the
    standard error of the per-set difference says whether a gap is more than the noise of this
    many sets; ``|gap| + 2 SE`` at the worst condition bounds the true gap at about 97.5 % per
    condition.
    """
    ref = per_set[ref_key]
    out = {}
    for key, scores in per_set.items():
        gap = scores.mean(axis=0) - ref.mean(axis=0)
        j = int(np.argmax(np.abs(gap)))
        row = {"gap_curve": [round(float(v), 4) for v in gap]}
        row["max_gap_to_ddpm"] = round(float(abs(gap[j])), 4)
        if key != ref_key and len(scores) > 1:
            se = (scores - ref).std(axis=0, ddof=1) / math.sqrt(len(scores))
            row["max_gap_se"] = round(float(se[j]), 4)
            row["max_gap_plus_2se"] = round(float((np.abs(gap) + 2 * se).max()), 4)
        out[key] = row
    return out


def _pool(paths: list[str]) -> dict:
    """Pool ``--scores`` files of the same model, classifier, conditions and guidance."""
    per_set: dict[str, list[np.ndarray]] = {}
    first, seeds, ref_key = None, [], None
    for path in paths:
        with np.load(path) as z:
            if "settings" not in z.files:
                raise SystemExit(f"{path}: no settings record (see --scores)")
            settings = json.loads(str(z["settings"]))
            arrays = {k: z[k] for k in z.files if k not in ("settings", "conditions")}
        same = {k: v for k, v in settings.items() if k not in ("seed", "sets", "runs")}
        if first is None:
            first = same
            ref_key = next(k for k in settings["runs"] if k.startswith("ddpm-"))
        elif same != first:
            raise SystemExit(f"{path}: other model, classifier, conditions or guidance")
        if settings["seed"] in seeds:
            raise SystemExit(f"{path}: seed {settings['seed']} is pooled twice")
        seeds.append(settings["seed"])
        for key, scores in arrays.items():
            per_set.setdefault(key, []).append(scores)
    common = {k: np.concatenate(v) for k, v in per_set.items() if len(v) == len(paths)}
    if ref_key not in common:
        raise SystemExit(f"{ref_key} is not in every file")
    return {
        "pooled": paths,
        "seeds": seeds,
        "sets": len(common[ref_key]),
        "conditions": first["conditions"],
        "guidance": first["guidance"],
        "reference": ref_key,
        "samplers": _compare(common, ref_key),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default=None, help="diffusion model folder (default: train a tiny one)"
    )
    p.add_argument("--classifier", action="append", default=None, help="patch classifier folder(s)")
    p.add_argument("--sets", type=int, default=8)
    p.add_argument("--conditions", default="0:1:0.25")
    p.add_argument("--fast-steps", default="25,50", help="steps of the fast samplers")
    p.add_argument(
        "--samplers",
        default="ddim,dpm-solver,dpm-solver-sde,ddpm",
        help="fast samplers to compare with the full DDPM chain, each at every --fast-steps",
    )
    p.add_argument("--ddpm-steps", type=int, default=None, help="default: all T")
    p.add_argument(
        "--guidance", type=float, default=None, help="guidance scale (default: the model's)"
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    from mitokit.interpret.sampling import PRECISIONS

    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="bf16: CUDA autocast")
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="the network's weights in channels_last layout (tensor-core convolutions on CUDA)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the sampling network (compiled in the warm-up, not timed)",
    )
    p.add_argument(
        "--scores",
        default=None,
        help="also save every sampler's per-set scores (sets x conditions) to this .npz",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="take the full DDPM chain's per-set scores from this --scores file of the same "
        "model, classifier, seed, sets, conditions and guidance instead of sampling it",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="tiny model: patch size")
    p.add_argument("--train-patches", type=int, default=96, help="tiny model: patches")
    p.add_argument("--train-epochs", type=int, default=8, help="tiny model: epochs")
    p.add_argument(
        "--pool",
        nargs="+",
        default=None,
        metavar="FILE.npz",
        help="sample nothing: pool these --scores files (other seeds of the same model, "
        "classifier, conditions and guidance) and print the gaps over all their sets",
    )
    a = p.parse_args()
    if a.pool:
        print(json.dumps(_pool(a.pool)))
        return

    from mitokit.interpret import curve_stats, generate_transitions, good_sets, parse_grid
    from mitokit.interpret.sampling import (
        compiled,
        resolve_device,
        resolve_guidance,
        sampler_name,
    )
    from mitokit.interpret.transitions import score_transitions
    from mitokit.models.classifier import load_ensemble
    from mitokit.models.diffusion import load_diffusion

    device = resolve_device(a.device)
    out: dict = {"torch": torch.__version__, "device": str(device)}
    if device.type == "cpu":
        out["cpu_threads"] = torch.get_num_threads()
        out["load_average_at_start"] = round(os.getloadavg()[0], 2)  # other jobs skew timings
    else:
        out["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True  # one input shape throughout: autotune it once
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, clf_dirs = a.model, a.classifier
        if model_dir is None or not clf_dirs:
            t0 = time.perf_counter()
            tiny_dpm, tiny_clf = _quick_models(
                Path(tmp), size=a.size, n=a.train_patches, epochs=a.train_epochs, seed=a.seed
            )
            out["quick_training_s"] = round(time.perf_counter() - t0, 1)
            model_dir = model_dir or str(tiny_dpm)
            clf_dirs = clf_dirs or [str(tiny_clf)]
            out["quick_models"] = {"model": a.model is None, "classifier": not a.classifier}
        model, _ = load_diffusion(model_dir, map_location=device)
        if a.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if a.compile:  # once for all samplers (generate_transitions' compile_net would
            # compile again in every call)
            if model.ema is not None:
                model.ema = compiled(model.ema, True)
            else:
                model.net = compiled(model.net, True)
        scorer, _ = load_ensemble(clf_dirs, map_location=device)
        conditions = parse_grid(a.conditions)
        out.update(
            model_parameters_m=round(sum(q.numel() for q in model.net.parameters()) / 1e6, 3),
            sample_size=model.sample_size,
            train_timesteps=model.num_train_timesteps,
            sets=a.sets,
            conditions=conditions.tolist(),
            classifier_members=len(scorer),
            guidance=resolve_guidance(model, a.guidance),
            precision=a.precision,
            channels_last=a.channels_last,
            compiled=a.compile,
        )
        fast = [int(s) for s in a.fast_steps.split(",") if s.strip()]
        runs = [("ddpm", a.ddpm_steps or model.num_train_timesteps)]
        kinds = [sampler_name(k) for k in a.samplers.split(",") if k.strip()]
        runs = list(dict.fromkeys(runs + [(kind, s) for kind in kinds for s in fast]))
        common = {
            "batch_size": a.batch_size,
            "device": device,
            "seed": a.seed,
            "guidance": a.guidance,
            "precision": a.precision,
        }
        ref_key = f"ddpm-{runs[0][1]}"
        settings = {
            "model_sha256": _weights_digest(model_dir),
            "classifier_sha256": [_weights_digest(d) for d in clf_dirs],
            "seed": a.seed,
            "sets": a.sets,
            "conditions": conditions.tolist(),
            "guidance": out["guidance"],
            "precision": a.precision,
        }
        results, per_set = {}, {}
        if a.reference:
            scores, record = _reference(a.reference, ref_key, settings)
            per_set[ref_key] = scores
            results[ref_key] = {**record, "reused_from": a.reference}
            runs = runs[1:]
        # warm-up on the timed runs' batch shapes (cuDNN autotuning, compilation)
        t0 = time.perf_counter()
        generate_transitions(model, a.sets, conditions, scheduler="ddim", steps=2, **common)
        out["warm_up_s"] = round(time.perf_counter() - t0, 2)
        for kind, steps in runs:
            tr = generate_transitions(
                model, a.sets, conditions, scheduler=kind, steps=steps, **common
            )
            scores = score_transitions(tr, scorer, batch_size=a.batch_size, device=device)
            mean = curve_stats(scores)["mean"]
            per_batch = max(1, a.batch_size // len(conditions))
            steps_run = tr.nfe // (2 if tr.guidance != 1.0 else 1)
            calls = math.ceil(a.sets / per_batch) * steps_run  # network calls (batches)
            key = f"{kind}-{steps}"
            per_set[key] = scores
            results[key] = {
                "sets_per_s": round(a.sets / tr.seconds, 4),
                "images_per_s": round(tr.images.shape[0] * tr.images.shape[1] / tr.seconds, 3),
                "network_evaluations_per_image": tr.nfe,
                "seconds": round(tr.seconds, 2),
                "s_per_network_call": round(tr.seconds / calls, 4),
                "mean_curve": [round(float(v), 4) for v in mean],
                "good_set_yield": float(good_sets(scores).mean()),
            }
        records = {key: dict(r) for key, r in results.items()}  # before the comparisons
        for key, row in _compare(per_set, ref_key).items():
            results[key].update(row)
            results[key]["speedup_vs_ddpm"] = round(
                results[key]["sets_per_s"] / results[ref_key]["sets_per_s"], 2
            )
        out["samplers"] = results
        if a.scores:
            record = json.dumps({**settings, "runs": records})
            tmp_path = Path(a.scores).with_suffix(".partial.npz")
            np.savez(tmp_path, conditions=conditions, settings=np.array(record), **per_set)
            os.replace(tmp_path, a.scores)
        out["largest_gap_to_ddpm"] = max(r["max_gap_to_ddpm"] for r in results.values())
        if device.type == "cpu":
            out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

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
``--scores FILE.npz`` keeps the per-set scores, so runs with other seeds can be pooled.

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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="tiny model: patch size")
    p.add_argument("--train-patches", type=int, default=96, help="tiny model: patches")
    p.add_argument("--train-epochs", type=int, default=8, help="tiny model: epochs")
    a = p.parse_args()

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
        # warm-up on the timed runs' batch shapes (cuDNN autotuning, compilation)
        t0 = time.perf_counter()
        generate_transitions(model, a.sets, conditions, scheduler="ddim", steps=2, **common)
        out["warm_up_s"] = round(time.perf_counter() - t0, 2)
        results, curves, per_set = {}, {}, {}
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
            curves[key] = mean
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
        ref_key = f"ddpm-{runs[0][1]}"
        ref = curves[ref_key]
        for key, mean in curves.items():
            gap = mean - ref
            j = int(np.argmax(np.abs(gap)))
            results[key]["gap_curve"] = [round(float(v), 4) for v in gap]
            results[key]["max_gap_to_ddpm"] = round(float(abs(gap[j])), 4)
            # the sets are paired (same starting noise): the standard error of the per-set
            # difference at the worst condition says whether the gap is more than the noise
            # of this many sets
            if key != ref_key and a.sets > 1:
                diff = per_set[key][:, j] - per_set[ref_key][:, j]
                results[key]["max_gap_se"] = round(float(diff.std(ddof=1) / math.sqrt(a.sets)), 4)
            results[key]["speedup_vs_ddpm"] = round(
                results[key]["sets_per_s"] / results[ref_key]["sets_per_s"], 2
            )
        out["samplers"] = results
        if a.scores:
            tmp_path = Path(a.scores).with_suffix(".partial.npz")
            np.savez(tmp_path, conditions=conditions, **per_set)
            os.replace(tmp_path, a.scores)
        out["largest_gap_to_ddpm"] = max(r["max_gap_to_ddpm"] for r in results.values())
        if device.type == "cpu":
            out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

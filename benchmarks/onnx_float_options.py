"""Can float ONNX Runtime run the tile model twice as fast as PyTorch on this CPU? One JSON object.

The random ResNet-18 tile classifier of ``slide_inference.py`` (250 px), batch norm folded, on
the same 256 random tiles in one process: PyTorch eager (channels-last input, as the slide
engine hands it) against the float ONNX graph ``--backend onnx`` uses, in ONNX Runtime sessions
set up every way that could matter on a CPU: the project's own
(:func:`mitokit.models.backend.open_session`: one intra-op thread per core, no spinning), with
spinning threads, without graph optimisation beyond the basic one, with parallel execution, and
at batch sizes 8, 32 and 64. Each setting runs ``--repeats`` times in turns (A B C ... A B C)
and reports its median tiles/s and its ratio over PyTorch's at the same batch size.

Usage::

    python benchmarks/onnx_float_options.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

TILE = 250


def _session(path: str, *, spin: bool, level: str, parallel: bool):
    import onnxruntime as ort

    from mitokit.models.backend import onnx_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = onnx_threads()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads = onnx_threads()
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiles", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy as np
    import torch
    from slide_inference import save_random_model

    from mitokit.models.backend import cached_graph, open_session
    from mitokit.models.backend.runtime import example_input
    from mitokit.models.predictors import load_predictor

    rng = np.random.default_rng(0)
    tiles = rng.random((args.tiles, 3, TILE, TILE), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_random_model(os.path.join(tmp, "model"))
        predictor = load_predictor(folder, device="cpu")  # batch norm folded
        model = predictor.model
        example = example_input(model, {"task": predictor.task})
        graph = str(cached_graph(model, folder, predictor.task, example))
        sessions = {
            "project (no spin, all optimisations)": open_session(graph),
            "spinning threads": _session(graph, spin=True, level="ORT_ENABLE_ALL", parallel=False),
            "basic optimisation only": _session(
                graph, spin=False, level="ORT_ENABLE_BASIC", parallel=False
            ),
            "parallel execution": _session(
                graph, spin=False, level="ORT_ENABLE_ALL", parallel=True
            ),
        }
        rows = []
        for batch in (8, 32, 64):
            chunks = [tiles[i : i + batch] for i in range(0, len(tiles), batch)]
            torch_chunks = [
                torch.from_numpy(c).contiguous(memory_format=torch.channels_last) for c in chunks
            ]

            def run_torch(chunks=torch_chunks):
                with torch.no_grad():
                    for c in chunks:
                        predictor.model.scores(c)

            runners = {"torch eager": run_torch}
            for name, session in sessions.items():
                feed = session.get_inputs()[0].name

                def run_onnx(s=session, f=feed, cs=chunks):
                    for c in cs:
                        s.run(None, {f: c})

                runners[name] = run_onnx
            for run in runners.values():  # warm up
                run()
            times: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(args.repeats):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(len(tiles) / (time.perf_counter() - start))
            base = statistics.median(times["torch eager"])
            for name, t in times.items():
                rows.append(
                    {
                        "batch": batch,
                        "setting": name,
                        "tiles_per_s": round(statistics.median(t), 2),
                        "over_torch": round(statistics.median(t) / base, 3),
                    }
                )
    best = max((r for r in rows if r["setting"] != "torch eager"), key=lambda r: r["over_torch"])
    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "tiles": args.tiles,
                "repeats": args.repeats,
                "torch_threads": torch.get_num_threads(),
                "rows": rows,
                "best_over_torch": best,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Training throughput of the patch classifier; prints one JSON object.

Images per second of full training steps (forward, BCE, backward, Adam) of a ResNet patch
classifier on random 64x64 patches resampled to ``--input-size`` inside the model, as the engine
runs them: on CPU in fp32, and on CUDA (when present) in fp32 and in bf16 autocast with
channels_last (target: at least 2x fp32).

Usage::

    python benchmarks/train_throughput.py                 # resnet18, 256 px, batch 32
    python benchmarks/train_throughput.py --arch resnet50 --batch-size 64 --steps 30
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def measure(
    *,
    arch: str,
    input_size: int,
    batch: int,
    steps: int,
    device: str,
    bf16: bool,
    channels_last: bool,
) -> float:
    """Images per second of ``steps`` timed training steps (after 3 warm-up steps)."""
    from mitokit.models.backbones import build_resnet

    torch.manual_seed(0)
    model = build_resnet(arch, input_size=input_size).to(device)
    x = torch.rand(batch, 3, 64, 64, device=device)
    y = (torch.rand(batch, device=device) > 0.5).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(3):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--gpu-steps", type=int, default=50)
    a = p.parse_args()
    common = {"arch": a.arch, "input_size": a.input_size, "batch": a.batch_size}
    out = {**common, "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    out["cpu_fp32_img_s"] = round(
        measure(**common, steps=a.steps, device="cpu", bf16=False, channels_last=False), 2
    )
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        fp32 = measure(**common, steps=a.gpu_steps, device="cuda", bf16=False, channels_last=False)
        fast = measure(**common, steps=a.gpu_steps, device="cuda", bf16=True, channels_last=True)
        out.update(
            gpu_fp32_img_s=round(fp32, 1),
            gpu_bf16_cl_img_s=round(fast, 1),
            gpu_speedup=round(fast / fp32, 2),
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Transitions, counterfactuals, their selection rules, figures and the ``generate`` CLI."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from _tiny_diffusion import tiny_model, write_cells
from click.testing import CliRunner
from PIL import Image

from mitokit.cli import cli
from mitokit.errors import MitokitError
from mitokit.interpret import (
    counterfactual,
    curve_stats,
    generate_transitions,
    good_sets,
    likeness_index,
    parse_grid,
)
from mitokit.interpret import noise as chain_noise
from mitokit.interpret import sampling as smp
from mitokit.interpret.selection import good_set_criteria

SAMPLERS = ("ddpm", "ddim", "dpm-solver", "dpm-solver-sde")


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


def _cells(n: int = 2, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth random cells (uint8), easier for a tiny model to invert than white noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    raw = gaussian_filter(rng.random((n, size, size, 3)), (0, 2, 2, 0))
    raw = (raw - raw.min()) / (raw.max() - raw.min())
    return (20 + 200 * raw).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# transitions


@pytest.mark.parametrize("scheduler", SAMPLERS)
def test_sets_share_their_noise_across_conditions(model, scheduler):
    tr = generate_transitions(model, 3, [0.0, 0.5, 0.5, 1.0], scheduler=scheduler, steps=10)
    assert tr.images.shape == (3, 4, 16, 16, 3) and tr.images.dtype == np.uint8
    np.testing.assert_array_equal(tr.images[:, 1], tr.images[:, 2])  # same condition, same image
    assert (tr.images[:, 0] != tr.images[:, 3]).any()  # the condition changes the output
    assert (tr.images[0] != tr.images[1]).any() and (tr.images[1] != tr.images[2]).any()
    np.testing.assert_array_equal(tr.conditions, [0.0, 0.5, 0.5, 1.0])
    assert tr.nfe == 10


def _same_up_to_rounding(a: np.ndarray, b: np.ndarray) -> None:
    """Equal but for rare +-1 grey levels (CPU kernels round differently by batch size)."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_same_seed_same_images_whatever_the_batch(model):
    a = generate_transitions(model, 3, [0.0, 1.0], steps=5, seed=7, batch_size=2)
    again = generate_transitions(model, 3, [0.0, 1.0], steps=5, seed=7, batch_size=2)
    np.testing.assert_array_equal(a.images, again.images)
    b = generate_transitions(model, 3, [0.0, 1.0], steps=5, seed=7, batch_size=64)
    _same_up_to_rounding(a.images, b.images)
    c = generate_transitions(model, 3, [0.0, 1.0], steps=5, seed=8)
    assert np.abs(a.images.astype(int) - c.images).mean() > 5
    # a set is its key: generating set 2 alone gives the same images
    d = generate_transitions(model, 1, [0.0, 1.0], steps=5, seed=7, first_set=2)
    _same_up_to_rounding(d.images[0], a.images[2])


def test_guidance_changes_the_output_and_doubles_the_evaluations(model):
    plain = generate_transitions(model, 1, [0.2, 0.9], scheduler="ddim", steps=5)
    guided = generate_transitions(model, 1, [0.2, 0.9], scheduler="ddim", steps=5, guidance=3.0)
    assert guided.nfe == 2 * plain.nfe
    assert (plain.images != guided.images).any()


def test_generation_refuses_bad_settings(model):
    with pytest.raises(MitokitError, match="conditions must lie in"):
        generate_transitions(model, 1, [0.0, 1.5], steps=2)
    with pytest.raises(MitokitError, match="unknown scheduler"):
        generate_transitions(model, 1, [0.0], scheduler="euler", steps=2)
    with pytest.raises(MitokitError, match="exceed"):
        generate_transitions(model, 1, [0.0], steps=500)
    with pytest.raises(MitokitError, match="bf16 needs a CUDA device"):
        generate_transitions(model, 1, [0.0], steps=2, precision="bf16")
    with pytest.raises(MitokitError, match="unknown precision"):
        counterfactual(model, _cells(1), [0, 5], steps=10, precision="fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_sampling_on_cuda_runs_the_network_in_bf16_and_stays_close_to_fp32(model):
    calls = []
    hook = model.sampling_net().register_forward_hook(lambda m, i, o: calls.append(o.dtype))
    try:
        kw = {"scheduler": "ddim", "steps": 10, "device": "cuda", "guidance": 2.0}
        fp32 = generate_transitions(model, 4, [0.0, 1.0], **kw)
        bf16 = generate_transitions(model, 4, [0.0, 1.0], precision="bf16", **kw)
    finally:
        hook.remove()
        model.to("cpu")
    assert set(calls[: len(calls) // 2]) == {torch.float32}
    assert set(calls[len(calls) // 2 :]) == {torch.bfloat16}
    diff = np.abs(fp32.images.astype(int) - bf16.images.astype(int))
    assert 0 < diff.mean() < 4  # bf16 rounds differently, but draws the same cells


class _Oracle(torch.nn.Module):
    """The exact noise predictor for data that is one image ``x_star``."""

    def __init__(self, alphas_cumprod: torch.Tensor, x_star: torch.Tensor) -> None:
        super().__init__()
        self.ac, self.x_star = alphas_cumprod, x_star

    def forward(self, x, t, condition, null=None):
        a = self.ac[int(t)]
        return (x - a.sqrt() * self.x_star) / (1 - a).sqrt()


def _from_noise(net, model, kind: str, steps: int, table: np.ndarray | None = None):
    """Chains of ``kind`` from pure noise to clean images, one per row of the noise table
    (default: two rows of seed 0)."""
    T = model.num_train_timesteps
    table = smp.noise_table(0, range(2), T) if table is None else table
    return smp.denoise(
        net,
        smp.start_noise(table, (3, 16, 16)),
        torch.zeros(len(table)),
        scheduler=smp.make_scheduler(model, kind),
        kind=kind,
        steps=steps,
        timesteps=smp.timestep_sequence(T - 1, steps, T),
        noise=table,
    )


@pytest.mark.parametrize(("kind", "steps"), [("ddpm", 1000), ("ddpm", 50), ("ddim", 50),
                                             ("ddim", 10), ("dpm-solver", 25),
                                             ("dpm-solver-sde", 50)])  # fmt: skip
def test_every_sampler_lands_on_the_data_with_an_exact_denoiser(kind, steps):
    """The loop's wiring (timesteps, strides, noise) is right when a perfect network is."""
    model = tiny_model(num_train_timesteps=1000)
    x_star = torch.rand(1, 3, 16, 16) * 1.6 - 0.8
    oracle = _Oracle(model.noise_scheduler.alphas_cumprod, x_star)
    out = _from_noise(oracle, model, kind, steps)
    torch.testing.assert_close(out, x_star.expand_as(out), atol=1e-5, rtol=0)
    # and DDIM inversion to the middle, then DDIM back, returns the data
    inv = smp.ddim_invert(oracle, out, torch.zeros(2), model=model, ends=[499], steps=50)
    back = smp.denoise(
        oracle,
        inv[499],
        torch.zeros(2),
        scheduler=smp.make_scheduler(model, "ddim"),
        kind="ddim",
        steps=50,
        timesteps=smp.timestep_sequence(499, 50, 1000),
    )
    torch.testing.assert_close(back, x_star.expand_as(back), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", SAMPLERS)
def test_every_sampler_clips_the_clean_estimate_as_the_training_scheduler_says(kind):
    """DDPM and DDIM clip x0 (clip_sample); DPM-Solver must too, or guided curves part."""
    model = tiny_model(num_train_timesteps=1000)
    assert model.noise_scheduler.config.clip_sample
    # an exact denoiser of an image of 3s: every clean estimate is far outside [-1, 1]
    net = _Oracle(model.noise_scheduler.alphas_cumprod, torch.full((1, 3, 16, 16), 3.0))
    out = _from_noise(net, model, kind, 1000 if kind == "ddpm" else 25)
    # the chain ends on the clipped estimate, 1 (unclipped it would end near 3)
    torch.testing.assert_close(out, torch.ones_like(out), atol=0.02, rtol=0)


@pytest.mark.parametrize("kind", SAMPLERS)
def test_only_the_stochastic_samplers_use_the_per_step_noise(model, kind):
    T = model.num_train_timesteps
    table = smp.noise_table(0, range(2), T)
    other = smp.noise_table(1, range(2), T)
    other[:, 0] = table[:, 0]  # the same starting noise, other step noise

    def run(start: np.ndarray, noise: np.ndarray | None) -> torch.Tensor:
        return smp.denoise(
            model.sampling_net(),
            smp.start_noise(start, (3, 16, 16)),
            torch.zeros(2),
            scheduler=smp.make_scheduler(model, kind),
            kind=kind,
            steps=20,
            timesteps=smp.timestep_sequence(T - 1, 20, T),
            noise=noise,
        )

    differ = bool((run(table, table) - run(other, other)).abs().max() > 1e-3)
    assert differ is (kind in smp.STOCHASTIC)
    if kind in smp.STOCHASTIC:
        with pytest.raises(ValueError, match="noise table"):
            run(table, None)


def test_interval_noise_weights_compose_the_posterior_by_hand():
    # abar = 0.9, 0.6, 0.3, 0.1 at t = 0..3; one step from 3 to 0 covers the full chain's
    # steps 3, 2 and 1. By hand: sigma_j^2 = (1 - abar_{j-1}) / (1 - abar_j) * beta_j and
    # a_j = sqrt(1 - beta_j) (1 - abar_{j-1}) / (1 - abar_j):
    # beta = 1/3, 1/2, 2/3 for j = 1, 2, 3; sigma_1^2 = 1/12, sigma_2^2 = 2/7, sigma_3^2 = 14/27;
    # a_1 = sqrt(2/3) / 4, a_2 = sqrt(1/2) * 4/7
    ac = torch.tensor([0.9, 0.6, 0.3, 0.1], dtype=torch.float64)
    a1, a2 = math.sqrt(2 / 3) / 4, math.sqrt(0.5) * 4 / 7
    w = smp.interval_noise_weights(ac, 3, 0)
    np.testing.assert_allclose(
        w, [math.sqrt(14 / 27) * a2 * a1, math.sqrt(2 / 7) * a1, math.sqrt(1 / 12)], rtol=1e-12
    )
    # their squares add up to the one step's posterior variance, 0.1/0.9 * (1 - 0.1/0.9)
    assert (w**2).sum() == pytest.approx(0.1 / 0.9 * (1 - 0.1 / 0.9), rel=1e-12)
    np.testing.assert_allclose(smp.interval_noise_weights(ac, 2, 1), [math.sqrt(2 / 7)])
    assert not smp.interval_noise_weights(ac, 3, -1).any()  # to the clean image: no noise
    # the same identity on a real 1000-step schedule
    from diffusers import DDPMScheduler

    real = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod.double()
    for t, t_next in [(999, 959), (520, 480), (60, 20), (40, 0)]:
        var = (1 - real[t_next]) / (1 - real[t]) * (1 - real[t] / real[t_next])
        got = (smp.interval_noise_weights(real, t, t_next) ** 2).sum()
        assert got == pytest.approx(float(var), rel=1e-9)
    with pytest.raises(ValueError, match="no step from timestep 3 to 3"):
        smp.interval_noise_weights(ac, 3, 3)


def test_interval_noise_is_standard_normal_and_carries_the_full_chains_noise():
    from diffusers import DDPMScheduler

    ac = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    table = smp.noise_table(0, range(3000), 1000)
    z = smp.interval_noise(table, ac, 999, 959, (4,))
    assert float(z.mean()) == pytest.approx(0.0, abs=0.03)
    assert float(z.std()) == pytest.approx(1.0, abs=0.03)
    # each of the full chain's 40 noises enters with its weight: the correlation of z with
    # z_t is w_t / ||w||
    w = smp.interval_noise_weights(ac, 999, 959)
    w = w / np.sqrt((w**2).sum())
    for i in (0, 20, 39):
        zi = smp.interval_noise(table, ac, 999 - i, 998 - i, (4,))  # stride 1: z_t itself
        corr = float(np.corrcoef(z.flatten(), zi.flatten())[0, 1])
        assert corr == pytest.approx(w[i], abs=0.04)
    # rows with the same seeds get the same noise; a stride of one is the drawn z_t
    torch.testing.assert_close(smp.interval_noise(table[[5, 5]], ac, 999, 959, (4,))[1], z[5])
    z_t = torch.randn(4, generator=torch.Generator().manual_seed(int(table[7, 1000])))
    torch.testing.assert_close(smp.interval_noise(table, ac, 999, 998, (4,))[7], z_t)


def test_interval_noise_is_the_same_whatever_the_number_of_threads(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from diffusers import DDPMScheduler

    ac = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    table = smp.noise_table(4, range(6), 1000)
    threaded = smp.interval_noise(table, ac, 999, 959, (3, 8, 8))
    with ThreadPoolExecutor(max_workers=1) as one:
        monkeypatch.setattr(chain_noise, "_noise_pool", lambda: one)
        single = smp.interval_noise(table, ac, 999, 959, (3, 8, 8))
    assert torch.equal(threaded, single)


@pytest.mark.parametrize("kind", smp.STOCHASTIC)
def test_strided_stochastic_chains_follow_the_full_chain_of_their_noise(model, kind):
    """A 10-step chain ends near the full 100-step DDPM chain of the same noise table."""
    T = model.num_train_timesteps
    table = smp.noise_table(0, range(4), T)
    other = smp.noise_table(1, range(4), T)
    other[:, 0] = table[:, 0]  # the same starting noise, other step noise
    net = model.sampling_net()
    full = _from_noise(net, model, "ddpm", T, table)
    coupled = (_from_noise(net, model, kind, 10, table) - full).abs().mean()
    independent = (_from_noise(net, model, kind, 10, other) - full).abs().mean()
    assert coupled < 0.5 * independent


def test_the_full_ddpm_chain_draws_the_tables_noise_as_diffusers_does(model):
    """Stride one: the loop is diffusers' own ancestral sampler with per-row generators."""
    T = model.num_train_timesteps
    table = smp.noise_table(3, range(2), T)
    net = model.sampling_net()
    x0 = smp.start_noise(table, (3, 16, 16))
    got = smp.denoise(
        net, x0, torch.zeros(2), scheduler=smp.make_scheduler(model, "ddpm"), kind="ddpm",
        steps=T, timesteps=smp.timestep_sequence(T - 1, T, T), noise=table,
    )  # fmt: skip
    scheduler = smp.make_scheduler(model, "ddpm")
    scheduler.set_timesteps(T)
    x = x0
    with torch.no_grad():
        for t in scheduler.timesteps:
            gens = [torch.Generator().manual_seed(int(s)) for s in table[:, int(t) + 1]]
            x = scheduler.step(net(x, t, torch.zeros(2)), t, x, generator=gens).prev_sample
    torch.testing.assert_close(got, x, atol=1e-6, rtol=0)


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile on CPU needs a C compiler",
)
def test_a_compiled_network_gives_the_same_transitions_and_counterfactuals(model):
    plain = generate_transitions(model, 2, [0.0, 1.0], scheduler="ddim", steps=4, seed=3)
    fast = generate_transitions(
        model, 2, [0.0, 1.0], scheduler="ddim", steps=4, seed=3, compile_net=True
    )
    _same_up_to_rounding(plain.images, fast.images)
    cells = _cells(2)
    a = counterfactual(model, cells, [0, 40], steps=4, seed=1)
    b = counterfactual(model, cells, [0, 40], steps=4, seed=1, compile_net=True)
    _same_up_to_rounding(a.images, b.images)


def test_timestep_sequences_end_at_zero_with_the_stride():
    assert smp.timestep_sequence(99, 10, 100) == [99, 89, 79, 69, 59, 49, 39, 29, 19, 9]
    assert smp.timestep_sequence(24, 10, 100) == [24, 14, 4]
    assert smp.timestep_sequence(3, 100, 100) == [3, 2, 1, 0]
    with pytest.raises(MitokitError):
        smp.timestep_sequence(100, 10, 100)


# --------------------------------------------------------------------------------------------
# counterfactuals


@pytest.mark.parametrize("mode", ["noise", "ddim-inversion"])
def test_counterfactual_at_t0_is_the_input(model, mode):
    cells = _cells(2)
    cf = counterfactual(model, cells, [0, 30, 100], mode=mode, steps=10)
    assert cf.images.shape == (2, 3, 16, 16, 3)
    np.testing.assert_array_equal(cf.images[:, 0], cells)
    np.testing.assert_array_equal(cf.t_grid, [0, 30, 100])
    assert (cf.images[:, 2] != cells).any()


def test_counterfactual_noise_mode_is_seeded(model):
    cells = _cells(2)
    a = counterfactual(model, cells, [50], steps=10, seed=1)
    again = counterfactual(model, cells, [50], steps=10, seed=1)
    np.testing.assert_array_equal(a.images, again.images)
    b = counterfactual(model, cells, [50], steps=10, seed=1, batch_size=1)
    _same_up_to_rounding(a.images, b.images)
    c = counterfactual(model, cells, [50], steps=10, seed=2)
    assert np.abs(a.images.astype(int) - c.images).mean() > 5


def test_ddim_inversion_then_ddim_denoising_reconstructs_the_input(model):
    cells = _cells(3)
    kw = {"condition": 0.5, "steps": 20}
    inv = counterfactual(model, cells, [50], mode="ddim_inversion", source_condition=0.5, **kw)
    noise = counterfactual(model, cells, [50], mode="noise", scheduler="ddim", **kw)
    err_inv = np.abs(inv.images[:, 0].astype(int) - cells).mean()
    err_noise = np.abs(noise.images[:, 0].astype(int) - cells).mean()
    assert err_inv < 8.0  # grey levels, on a random tiny model
    assert err_inv < 0.25 * err_noise


def test_one_ddim_inversion_step_by_hand(model):
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    cond = torch.tensor([0.3, float("nan")])
    net = model.sampling_net()
    out = smp.ddim_invert(net, x0, cond, model=model, ends=[4], steps=10)  # stride 10 > 4
    a = model.noise_scheduler.alphas_cumprod[4]
    with torch.no_grad():
        eps = net(x0, torch.tensor(0), cond)
    torch.testing.assert_close(out[4], a.sqrt() * x0 + (1 - a).sqrt() * eps)


def test_counterfactual_refuses_bad_settings(model):
    cells = _cells(1)
    with pytest.raises(MitokitError, match="t grid"):
        counterfactual(model, cells, [0, 101], steps=10)
    with pytest.raises(MitokitError, match="ddim"):
        counterfactual(model, cells, [10], mode="ddim-inversion", scheduler="ddpm")
    with pytest.raises(MitokitError, match="unknown mode"):
        counterfactual(model, cells, [10], mode="sde")


# --------------------------------------------------------------------------------------------
# selection rules on hand-made scores


def test_good_sets_on_hand_made_scores():
    scores = np.array(
        [
            [0.05, 0.3, 0.55, 0.8, 0.95],  # good
            [0.05, 0.1, 0.2, 0.8, 0.95],  # jump of 0.6
            [0.15, 0.3, 0.55, 0.8, 0.95],  # starts too high
            [0.05, 0.3, 0.55, 0.8, 0.85],  # ends too low
            [0.05, 0.3, 0.55, 0.8, 0.95],  # good again
        ]
    )
    np.testing.assert_array_equal(good_sets(scores), [True, False, False, False, True])
    np.testing.assert_array_equal(
        good_sets(scores, max_step=0.7, first_below=0.2), [True, True, True, False, True]
    )
    # a small reversal is allowed, a large one is not (absolute step change)
    wavy = np.array([[0.0, 0.29, 0.2, 0.45, 0.7, 0.95], [0.0, 0.29, 0.55, 0.2, 0.7, 0.95]])
    np.testing.assert_array_equal(good_sets(wavy), [True, False])
    with pytest.raises(MitokitError):
        good_sets(np.zeros((2, 1)))
    # each rule on its own says which one a set fails
    passes = good_set_criteria(scores)
    np.testing.assert_array_equal(passes["first_below"], [True, True, False, True, True])
    np.testing.assert_array_equal(passes["last_above"], [True, True, True, False, True])
    np.testing.assert_array_equal(passes["max_step"], [True, False, True, True, True])
    np.testing.assert_array_equal(passes["all"], good_sets(scores))


def test_curve_stats_on_hand_made_scores():
    scores = np.array([[0.0, 0.4], [0.2, 0.6], [0.4, 1.1]])
    st = curve_stats(scores)
    np.testing.assert_allclose(st["mean"], [0.2, 0.7])
    np.testing.assert_allclose(st["median"], [0.2, 0.6])
    np.testing.assert_allclose(
        st["se"], [0.2 / math.sqrt(3), np.std([0.4, 0.6, 1.1], ddof=1) / 3**0.5]
    )
    single = curve_stats(np.array([[0.5, 0.6]]))
    assert np.isnan(single["se"]).all()


def test_likeness_index_on_hand_made_scores():
    t = [0, 100, 200, 300]
    scores = np.array(
        [
            [0.1, 0.6, 0.95, 0.99],  # resembles at 100, convincing at 200
            [0.1, 0.2, 0.3, 0.4],  # never
            [0.5, 0.4, 0.92, 0.3],  # already resembles at 0; convincing at 200
            [0.1, 0.2, 0.3, 0.7],  # resembles at 300 only
        ]
    )
    li = likeness_index(scores, t)
    expected = np.array([[100, 200], [np.nan, np.nan], [0, 200], [300, np.nan]])
    np.testing.assert_array_equal(li, expected)
    # column order does not matter: the earliest t is the smallest
    np.testing.assert_array_equal(likeness_index(scores[:, ::-1], t[::-1]), expected)

    from mitokit.interpret.selection import likeness_curves

    # by label: cells 0 and 2 are label 1, cells 1 and 3 label 0, a fifth cell's label unknown
    li5 = np.vstack([li, [[0, 0]]])
    curves = likeness_curves(li5, t, np.array([1.0, 0.0, 1.0, 0.0, np.nan]))
    assert list(curves) == ["label 0", "label 1"]
    assert curves["label 1"]["n"] == 2 and curves["label 0"]["n"] == 2
    np.testing.assert_allclose(curves["label 1"]["fraction"][0], [0.5, 1, 1, 1])
    np.testing.assert_allclose(curves["label 1"]["fraction"][1], [0, 0, 1, 1])
    np.testing.assert_allclose(curves["label 0"]["fraction"][0], [0, 0, 0, 0.5])
    np.testing.assert_allclose(curves["label 0"]["fraction"][1], [0, 0, 0, 0])
    everyone = likeness_curves(li, t)["all cells"]
    np.testing.assert_allclose(everyone["fraction"][0], [0.25, 0.5, 0.5, 0.75])
    # many distinct labels are cut at their quartiles: four groups of two
    many = likeness_curves(np.zeros((8, 2)), t, np.arange(8) / 7)
    assert [c["n"] for c in many.values()] == [2, 2, 2, 2]


def test_parse_grid():
    np.testing.assert_allclose(parse_grid("0:1:0.25"), [0, 0.25, 0.5, 0.75, 1])
    assert len(parse_grid("0:1:0.1")) == 11
    np.testing.assert_array_equal(parse_grid("0:1000:100", integer=True), np.arange(0, 1001, 100))
    np.testing.assert_allclose(parse_grid("1, 0.5"), [0.5, 1])
    for bad in ("0:1", "a:b:c", "0:1:0", ""):
        with pytest.raises(MitokitError):
            parse_grid(bad)


# --------------------------------------------------------------------------------------------
# CLI


def _save_classifier(folder):
    from mitokit.engines.task import get_task
    from mitokit.models.io import save_model

    cfg = {**get_task("patch_classifier").model_defaults, "input_size": 32}
    torch.manual_seed(0)
    model = get_task("patch_classifier").build_model(cfg)
    save_model(model, folder, task="patch_classifier", model_cfg=cfg)
    return folder


def test_cli_train_then_generate_transitions_and_counterfactuals(tmp_path):
    labels = write_cells(tmp_path / "cells", n=8, size=32)
    config = tmp_path / "dpm.yaml"
    config.write_text(
        "task: diffusion\n"
        "model: {sample_size: 32, block_out_channels: [16, 32], layers_per_block: 1,\n"
        "        down_block_types: [DownBlock2D, AttnDownBlock2D],\n"
        "        up_block_types: [AttnUpBlock2D, UpBlock2D], norm_num_groups: 8}\n"
        f"data: {{labels: {labels}}}\n"
        "optim: {lr: 0.001}\n"
        "train: {epochs: 1, batch_size: 8, device: cpu}\n"
    )
    runner = CliRunner()
    res = runner.invoke(
        cli, ["train", str(config), "--out", str(tmp_path / "run"), "--no-progress", "--json"]
    )
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    clf = _save_classifier(tmp_path / "clf")

    out = tmp_path / "tr"
    args = ["generate", "transitions", "--model", str(run), "--n", "3", "--conditions", "0:1:0.5"]
    args += ["--scheduler", "ddim", "--steps", "4", "--classifier", str(clf), "--out", str(out)]
    res = runner.invoke(cli, [*args, "--no-progress", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sets"] == 3 and summary["conditions"] == [0.0, 0.5, 1.0]
    assert summary["scored"] and 0.0 <= summary["good_set_yield"] <= 1.0
    scores = np.array([float(r["score"]) for r in csv.DictReader((out / "scores.csv").open())])
    passing = summary["selection"]["passing"]
    first, last = scores.reshape(3, 3)[:, 0], scores.reshape(3, 3)[:, -1]
    assert passing["first_below"] == int((first < 0.1).sum())
    assert passing["last_above"] == int((last > 0.9).sum())
    assert passing["first_and_last"] == int(((first < 0.1) & (last > 0.9)).sum())
    assert summary["n_good_sets"] <= min(passing.values())
    assert passing["all"] == summary["n_good_sets"]
    assert len(summary["curve"]["mean"]) == 3
    assert summary["trend"]["n_sets"] == 3 and -1 <= summary["trend"]["change_mean"] <= 1
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 9 and {"set", "condition", "score", "image"} <= set(rows[0])
    assert (out / rows[0]["image"]).is_file() and (out / "curve.png").is_file()
    assert list((out / "grids").glob("*.png"))
    with Image.open(out / rows[0]["image"]) as im:
        assert im.size == (32, 32)

    again = runner.invoke(cli, [*args, "--no-progress", "--device", "cpu"])
    assert again.exit_code == 2 and "not empty" in again.output  # no half-written output

    cells = sorted((tmp_path / "cells" / "images").glob("*.png"))[:2]
    cf_out = tmp_path / "cf"
    args = ["generate", "counterfactual", "--model", str(run / "best"), "--images", str(cells[0])]
    args += [str(cells[1]), "--t-grid", "0:1000:500", "--mode", "ddim-inversion"]
    args += ["--steps", "4", "--classifier", str(clf), "--out", str(cf_out), "--no-progress"]
    res = runner.invoke(cli, [*args, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((cf_out / "likeness.csv").open()))
    assert [r["id"] for r in rows] == [c.stem for c in cells]
    assert set(rows[0]) == {"id", "score_t0", "score_t500", "score_t1000"} | {
        "t_resembles",
        "t_convincing",
    }
    assert len(list((cf_out / "strips").glob("*.png"))) == 2
    assert len(list((cf_out / "images").glob("*.png"))) == 6
    with Image.open(cf_out / "likeness.png") as im:
        assert im.width > im.height > 100
    with Image.open(cf_out / "images" / f"{cells[0].stem}_t0000.png") as im:
        np.testing.assert_array_equal(np.asarray(im), np.asarray(Image.open(cells[0])))

    # "own" needs scores: a label file gives them, image files do not
    own = ["--source-condition", "own", "--overwrite", "--device", "cpu"]
    res = runner.invoke(cli, [*args, *own])
    assert res.exit_code == 2 and "has no score" in res.output
    res = runner.invoke(cli, [*args[:5], str(labels), *args[7:], *own])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((cf_out / "likeness.csv").open()))
    assert len(rows) == 8
    from mitokit.models.classifier import read_patch_table

    table = read_patch_table(labels)
    assert [float(r["label"]) for r in rows] == pytest.approx(list(table.score), abs=1e-5)
    summary = json.loads((cf_out / "summary.json").read_text())
    corr = summary["spearman_vs_label"]
    assert corr["resembles"]["n"] == 8 and corr["convincing"]["n"] == 8
    assert summary["spearman_input_score_vs_label"]["n"] == 8
    assert set(summary["spearman_vs_label_beyond_input"]) == {"resembles", "convincing"}


def test_cli_choices_are_the_samplers_and_precisions_of_the_library():
    # the CLI spells them out (it imports no torch at start); they must not drift apart
    from mitokit.cli.generate import counterfactual_cmd, transitions

    for command in (transitions, counterfactual_cmd):
        choices = {p.name: p.type.choices for p in command.params if hasattr(p.type, "choices")}
        assert tuple(choices["precision"]) == smp.PRECISIONS
        assert tuple(choices["scheduler"]) == smp.SAMPLERS


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "generate",
            "transitions",
            "--model",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "nope" in res.output
    res = runner.invoke(
        cli,
        ["generate", "transitions", "--model", "x", "--conditions", "0:1", "--out", "o"],
    )
    assert res.exit_code == 2 and "start:stop:step" in res.output


def test_likeness_correlation_ranks_never_reached_after_the_grid():
    from mitokit.interpret.selection import likeness_correlation

    grid = [0, 100, 200, 300]
    # Labels 1, 2/3, 1/3, 0 need t = 100, 200, 300 and never: a perfect negative rank order.
    res = likeness_correlation(
        np.array([100, 200, 300, np.nan]), np.array([1, 2 / 3, 1 / 3, 0]), grid
    )
    assert res["n"] == 4 and res["rho"] == pytest.approx(-1.0)
    # Hand-computed with ties: labels (0, 0, 1, 1) rank (1.5, 1.5, 3.5, 3.5); t (300, never, 0,
    # 300) rank (2.5, 4, 1, 2.5): deviations (-1, -1, 1, 1) and (0, 1.5, -1.5, 0), so
    # rho = -3 / sqrt(4 * 4.5).
    res = likeness_correlation(np.array([300, np.nan, 0, 300]), np.array([0, 0, 1, 1]), grid)
    assert res["rho"] == pytest.approx(-3 / (2 * math.sqrt(4.5)))
    # Unknown labels are left out; a constant column has no correlation.
    res = likeness_correlation(np.array([0, 100, 200]), np.array([np.nan, 0.5, 0.5]), grid)
    assert res == {"rho": None, "p": None, "n": 2}
    with pytest.raises(MitokitError):
        likeness_correlation(np.zeros(3), np.zeros(2), grid)


def test_likeness_correlations_separate_the_input_from_what_the_model_adds():
    from mitokit.interpret.selection import likeness_correlations

    grid = [0, 500, 1000]
    scores = np.array(
        [
            [0.8, 0.95, 0.95],  # resembles at the input already, convincing at 500
            [0.8, 0.6, 0.95],
            [0.1, 0.6, 0.7],  # resembles at 500, never convincing
            [0.1, 0.6, 0.7],
            [0.1, 0.2, 0.6],  # resembles at 1000
            [0.1, 0.2, 0.3],  # never
        ]
    )
    labels = np.array([1, 1, 0, 1 / 3, 2 / 3, 1])
    corr = likeness_correlations(scores, grid, labels)
    # Over all cells the two the classifier already calls atypical make the index look right:
    # label ranks (5, 5, 1, 2, 3, 5), t ranks (1.5, 1.5, 3.5, 3.5, 5, 6), covariance -3 over
    # variances 15.5 and 16.5.
    assert corr["all"]["resembles"]["n"] == 6
    assert corr["all"]["resembles"]["rho"] == pytest.approx(-3 / math.sqrt(15.5 * 16.5))
    # Beyond the input (cells 2-5): labels rank 1..4, t (500, 500, 1000, never) rank
    # (1.5, 1.5, 3, 4): rho = 4.5 / sqrt(5 * 4.5) = 3 / sqrt(10), the wrong way round.
    beyond = corr["beyond_input"]["resembles"]
    assert beyond["n"] == 4 and beyond["rho"] == pytest.approx(3 / math.sqrt(10))
    assert corr["beyond_input"]["convincing"]["n"] == 6  # no input reaches 0.9
    assert corr["input_score"]["n"] == 6 and corr["input_score"]["rho"] > 0.5
    # Without t = 0 in the grid there is no input to separate.
    assert set(likeness_correlations(scores[:, 1:], grid[1:], labels)) == {"all"}
    with pytest.raises(MitokitError, match="5 labels for 6 cells"):
        likeness_correlations(scores, grid, labels[:5])


def test_condition_trend_is_paired_within_sets():
    from mitokit.interpret.selection import condition_trend

    cond = [0.0, 0.5, 1.0]
    # Three sets rising by 0.2, 0.4, 0.6 from very different starts; one flat set.
    scores = np.array(
        [[0.0, 0.1, 0.2], [0.5, 0.7, 0.9], [0.1, 0.2, 0.7], [0.3, 0.3, 0.3]], dtype=float
    )
    tr = condition_trend(scores, cond)
    assert tr["n_sets"] == 4
    assert tr["change_mean"] == pytest.approx(0.3)  # (0.2 + 0.4 + 0.6 + 0) / 4
    # Sample sd of (0.2, 0.4, 0.6, 0): deviations (-0.1, 0.1, 0.3, -0.3), sum of squares 0.2.
    assert tr["change_se"] == pytest.approx(math.sqrt(0.2 / 3) / 2)
    assert tr["change_positive"] == pytest.approx(0.75)
    assert tr["spearman_mean"] == pytest.approx(1.0)  # the flat set has no correlation
    # Signed-rank test of three positive changes (the zero dropped): exact p = 2 / 2**3.
    assert tr["wilcoxon_p"] == pytest.approx(0.25)
    # A model that ignores the condition: every change 0, no test.
    flat = condition_trend(np.tile([[0.2], [0.6]], (1, 3)), cond)
    assert flat["change_mean"] == 0 and flat["wilcoxon_p"] is None
    assert flat["spearman_mean"] is None
    with pytest.raises(MitokitError, match="2 conditions for 3"):
        condition_trend(scores, cond[:2])


def test_figures_drawn_in_worker_processes_are_the_same_files(tmp_path):
    from mitokit.interpret.figures import figure_workers, write_grid_figures

    rng = np.random.default_rng(0)
    jobs = [
        (
            name,
            {
                "images": rng.integers(0, 255, (2, 3, 16, 16, 3), dtype=np.uint8),
                "col_labels": ["a", "b", "c"],
                "scores": rng.random((2, 3)),
                "title": name,
            },
        )
        for name in ("one.png", "two.png", "three.png")
    ]
    for folder, workers in (("here", 0), ("pool", 2)):
        write_grid_figures([(tmp_path / folder / p, kw) for p, kw in jobs], workers=workers)
    for name, _ in jobs:
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()
    assert figure_workers(3) == 0 and figure_workers(3, workers=4) == 4
    assert 0 <= figure_workers(1000) <= 8

"""Synthetic H&E rendering: image statistics match the intent of the latent mitosis score."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats
from skimage import measure

from mitokit.data.synthetic._noise import fbm, smooth_white, value_noise
from mitokit.data.synthetic.cells import (
    ANAPHASE,
    APOPTOTIC,
    HYPERCHROMATIC,
    INTERPHASE,
    METAPHASE,
    MITOTIC,
    NORMAL,
    PROPHASE,
    TELOPHASE,
)
from mitokit.data.synthetic.render import (
    StainParams,
    cell_scene,
    nucleus_masks,
    optical_density,
    render_cell,
    render_region,
)
from mitokit.data.synthetic.scene import SceneParams, TissueField, sample_cells
from mitokit.errors import MitokitError


def _measure(m: float, kind: int, phase: int, seed: int):
    """Rendered patch, its H density (colour deconvolution) and the centre cell's true mask."""
    cells, box, tissue, stain = cell_scene(m, kind=kind, phase=phase, seed=seed)
    image = render_region(cells, box, stain=stain, seed=tissue.seed, tissue=tissue)
    h, _ = optical_density(image, stain)
    mask = nucleus_masks(cells, box) == 1
    return image, h, mask


def _blob(h: np.ndarray, mask: np.ndarray, threshold: float = 1.2):
    """The dark blob (thresholded H density) that overlaps the true nucleus most."""
    dark = ndimage.gaussian_filter(h, 1.0) > threshold
    labels = measure.label(dark)
    ids, counts = np.unique(labels[mask & dark], return_counts=True)
    if len(ids) == 0:
        return None
    return measure.regionprops((labels == ids[np.argmax(counts)]).astype(int))[0]


def test_nuclear_haematoxylin_rises_with_m():
    rng = np.random.default_rng(0)
    ms, hs = [], []
    for i in range(200):
        m = float(rng.random())
        kind = MITOTIC if rng.random() < 0.5 else NORMAL
        phase = int(rng.choice([PROPHASE, METAPHASE, ANAPHASE, TELOPHASE])) if kind else 0
        _, h, mask = _measure(m, kind, phase, seed=i)
        ms.append(m)
        hs.append(float(h[mask].mean()))
    ms_a, hs_a = np.array(ms), np.array(hs)
    assert stats.spearmanr(ms_a, hs_a)[0] > 0.7
    bins = [hs_a[(ms_a >= lo) & (ms_a < lo + 0.2)].mean() for lo in np.arange(0, 1, 0.2)]
    assert np.all(np.diff(bins) > 0), bins


def test_same_seed_morphs_one_cell_with_m():
    tables = [cell_scene(m, kind=MITOTIC, phase=METAPHASE, seed=7)[0] for m in (0.0, 1.0)]
    for name in ("x", "y", "radius", "elongation", "angle", "seed", "kind", "phase"):
        np.testing.assert_array_equal(getattr(tables[0], name), getattr(tables[1], name))
    assert tables[0].m[0] == 0.0 and tables[1].m[0] == 1.0
    low = render_cell(0.0, kind=MITOTIC, phase=METAPHASE, seed=7, size=128)
    high = render_cell(1.0, kind=MITOTIC, phase=METAPHASE, seed=7, size=128)
    # same place, neighbours and stain: away from the cell body nothing changes
    yy, xx = np.mgrid[:128, :128]
    reach = 2.4 * tables[0].radius[0] * np.sqrt(tables[0].elongation[0]) + 4
    far = np.hypot(xx - 64, yy - 64) > reach
    assert np.abs(low[far].astype(int) - high[far]).mean() < 1
    assert np.abs(low[~far].astype(int) - high[~far]).mean() > 10


def test_mitotic_cell_at_m0_looks_like_an_ordinary_nucleus():
    _, h_mit, mask_mit = _measure(0.0, MITOTIC, METAPHASE, seed=3)
    hs = [float(h[m].mean()) for _, h, m in (_measure(0.05, NORMAL, 0, seed=s) for s in range(8))]
    assert min(hs) - 0.2 < h_mit[mask_mit].mean() < max(hs) + 0.2
    blob_area = mask_mit.sum()
    assert blob_area > 300  # a whole round nucleus, not a thin plate


def test_apoptotic_imposters_are_dark_but_round_and_smooth():
    apo_h, apo_circ, apo_sol = [], [], []
    met_h, met_circ, met_sol = [], [], []
    for s in range(16):
        _, h, mask = _measure(0.2, APOPTOTIC, INTERPHASE, seed=100 + s)
        apo_h.append(h[mask].mean())
        blob = _blob(h, mask)
        apo_circ.append(4 * np.pi * blob.area / blob.perimeter**2)
        apo_sol.append(blob.solidity)
        _, h, mask = _measure(0.9, MITOTIC, METAPHASE, seed=200 + s)
        met_h.append(h[mask].mean())
        blob = _blob(h, mask)
        met_circ.append(4 * np.pi * blob.area / blob.perimeter**2)
        met_sol.append(blob.solidity)
    # as dark as mitoses ...
    assert np.mean(apo_h) > 0.8 * np.mean(met_h)
    # ... but round and smooth
    assert np.mean(apo_circ) > np.mean(met_circ) + 0.2
    assert np.mean(apo_sol) > np.mean(met_sol) + 0.05
    assert min(apo_sol) > 0.9


def test_hyperchromatic_imposters_are_darker_than_ordinary_nuclei_but_not_plates():
    hyper, normal = [], []
    for s in range(8):
        _, h, mask = _measure(0.2, HYPERCHROMATIC, INTERPHASE, seed=300 + s)
        hyper.append(h[mask].mean())
        assert mask.sum() > 500  # large, round-oval: no plate
        _, h, mask = _measure(0.05, NORMAL, INTERPHASE, seed=400 + s)
        normal.append(h[mask].mean())
    assert np.mean(hyper) > np.mean(normal) + 0.3


def test_anaphase_at_high_m_has_two_masses():
    for s in range(6):
        _, _, mask = _measure(0.95, MITOTIC, ANAPHASE, seed=s)
        labels = measure.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        assert int((sizes >= 0.1 * sizes.sum()).sum()) == 2
        _, _, mask = _measure(0.95, MITOTIC, METAPHASE, seed=s)
        sizes = np.bincount(measure.label(mask).ravel())[1:]
        assert int((sizes >= 0.1 * sizes.sum()).sum()) == 1


def test_mitotic_cell_body_is_clearer():
    # the cytoplasm around a mitosis is paler than around the same cell at m = 0
    masks = []
    for m in (0.0, 1.0):
        cells, box, tissue, stain = cell_scene(m, kind=MITOTIC, phase=METAPHASE, seed=11)
        masks.append(nucleus_masks(cells, box) > 0)
    lo = render_cell(0.0, kind=MITOTIC, phase=METAPHASE, seed=11)
    hi = render_cell(1.0, kind=MITOTIC, phase=METAPHASE, seed=11)
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(xx - 32, yy - 32)
    ring = (r > cells.radius[0] * 1.1) & (r < cells.radius[0] * 1.7) & ~masks[0] & ~masks[1]
    _, e_lo = optical_density(lo, stain)
    _, e_hi = optical_density(hi, stain)
    assert e_hi[ring].mean() < e_lo[ring].mean() - 0.05


def test_render_cell_is_deterministic_and_seed_dependent():
    a = render_cell(0.7, kind=MITOTIC, phase=ANAPHASE, seed=5)
    b = render_cell(0.7, kind=MITOTIC, phase=ANAPHASE, seed=5)
    c = render_cell(0.7, kind=MITOTIC, phase=ANAPHASE, seed=6)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 5


def test_region_renders_the_same_whole_or_in_pieces():
    p = SceneParams()
    tissue = TissueField(9, p)
    box = (5000, 7000, 5300, 7200)
    cells = sample_cells(
        (4900, 6900, 5400, 7300), params=p, rng=np.random.default_rng(1), tissue=tissue
    )
    stain = StainParams()
    whole = render_region(cells, box, stain=stain, seed=9, tissue=tissue)
    left = render_region(cells, (5000, 7000, 5137, 7200), stain=stain, seed=9, tissue=tissue)
    right = render_region(cells, (5137, 7000, 5300, 7200), stain=stain, seed=9, tissue=tissue)
    pieces = np.concatenate([left, right], axis=1)
    assert np.abs(whole.astype(int) - pieces).max() <= 1


def test_noise_fields_are_seamless():
    xs, ys = np.arange(0, 300) + 0.5, np.arange(50, 90) + 0.5
    whole = fbm(3, xs, ys, 40.0, 3)
    np.testing.assert_array_equal(whole[:, 100:], fbm(3, xs[100:], ys, 40.0, 3))
    np.testing.assert_array_equal(
        value_noise(4, xs, ys, 7.0)[:, :50], value_noise(4, xs[:50], ys, 7.0)
    )
    np.testing.assert_array_equal(
        smooth_white(5, 0, 0, 64, 64, 1.5)[:, 32:], smooth_white(5, 32, 0, 32, 64, 1.5)
    )


def test_optical_density_inverts_beer_lambert():
    stain = StainParams(noise=0.0, blur=0.0)
    h = np.linspace(0, 2, 50, dtype=np.float32)[None, :].repeat(4, 0)
    e = np.linspace(0.8, 0, 50, dtype=np.float32)[None, :].repeat(4, 0)
    hv = np.asarray(stain.h_vector)
    ev = np.asarray(stain.e_vector)
    rgb = np.asarray(stain.background) * np.exp(-(h[..., None] * hv + e[..., None] * ev))
    image = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    h2, e2 = optical_density(image, stain)
    assert np.abs(h2 - h).max() < 0.1
    assert np.abs(e2 - e).max() < 0.1


def test_colour_is_h_and_e_like():
    # pink-purple: red and blue above green, as in H&E; not saturated, not grey
    image = np.concatenate([render_cell(0.1, kind=NORMAL, seed=s) for s in range(6)])
    mean = image.reshape(-1, 3).mean(0)
    assert mean[0] > mean[1] + 30 and mean[2] > mean[1] + 30
    assert 90 < mean[1] < 170


def test_stain_sampling_varies_around_the_reference():
    rng = np.random.default_rng(0)
    stains = [StainParams.sample(rng) for _ in range(20)]
    for s in stains:
        assert abs(np.linalg.norm(s.h_vector) - 1) < 1e-6
        assert np.dot(s.h_vector, StainParams().h_vector) > 0.97
        assert np.dot(s.e_vector, StainParams().e_vector) > 0.95
    assert len({s.h_scale for s in stains}) == 20
    assert StainParams.from_dict(stains[0].to_dict()) == stains[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m": 1.5, "kind": MITOTIC, "phase": METAPHASE}, "m must be"),
        ({"m": 0.5, "kind": MITOTIC, "phase": INTERPHASE}, "mitotic phase"),
        ({"m": 0.5, "kind": NORMAL, "phase": METAPHASE}, "INTERPHASE"),
        ({"m": 0.5, "kind": 9, "phase": INTERPHASE}, "kind"),
    ],
)
def test_render_cell_rejects_bad_arguments(kwargs, match):
    m = kwargs.pop("m")
    with pytest.raises(MitokitError, match=match):
        render_cell(m, seed=0, **kwargs)


def test_bad_parameters_raise_one_line_errors():
    with pytest.raises(MitokitError, match="mpp"):
        SceneParams(mpp=-1)
    with pytest.raises(MitokitError, match="blur"):
        StainParams(blur=3.0)
    with pytest.raises(MitokitError, match="empty box"):
        render_region(
            sample_cells((0, 0, 10, 10), rng=np.random.default_rng(0)), (5, 5, 5, 9), seed=0
        )

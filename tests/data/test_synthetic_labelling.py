"""Labelling processes drawn from a known truth: pathologists, consensus, crowd, image presence."""

from __future__ import annotations

import numpy as np
import pytest

from mitokit.data.synthetic.cells import APOPTOTIC, MITOTIC, NORMAL, CellTable
from mitokit.data.synthetic.labelling import (
    CrowdPanel,
    RaterPanel,
    cluster_boxes,
    consensus,
    consensus_centroids,
    consensus_set,
    crowd_boxes,
    image_presence,
    label_scene,
    rate_pathologists,
)
from mitokit.io.annotations import Vote
from mitokit.labels import agreement
from mitokit.types import MITOSIS, NON_MITOSIS


def grid_cells(m, *, spacing: float = 40.0, radius: float = 7.0, kind=None) -> CellTable:
    """Cells on a grid far enough apart that their boxes never overlap."""
    m = np.asarray(m, dtype=np.float32)
    n = len(m)
    side = max(int(np.ceil(np.sqrt(n))), 1)
    idx = np.arange(n)
    return CellTable(
        id=idx + 100,  # ids differ from row numbers on purpose
        x=(idx % side) * spacing + spacing / 2,
        y=(idx // side) * spacing + spacing / 2,
        kind=np.full(n, NORMAL, np.int8) if kind is None else np.asarray(kind, np.int8),
        m=m,
        phase=np.zeros(n, np.int8),
        radius=np.full(n, radius, np.float32),
        elongation=np.ones(n, np.float32),
        angle=np.zeros(n, np.float32),
        seed=idx.astype(np.uint32),
    )


@pytest.fixture(scope="module")
def uniform_cells() -> CellTable:
    return grid_cells(np.random.default_rng(0).uniform(0.0, 1.0, 2000))


def rater_counts(votes) -> list[dict[str, int]]:
    out = []
    for cell_votes in votes:
        counts: dict[str, int] = {}
        for v in cell_votes:
            counts[v.rater] = counts.get(v.rater, 0) + 1
        out.append(counts)
    return out


# --- pathologists ------------------------------------------------------------------------------


def test_agreement_falls_as_rater_noise_rises(uniform_cells):
    kappas, alphas = [], []
    for noise in (0.05, 0.15, 0.35):
        panel = RaterPanel(noise=noise, bias_sd=0.0)  # noise alone moves agreement
        votes = rate_pathologists(uniform_cells, panel=panel, seed=1)
        a = agreement(votes)
        # Repeated ratings make the number per cell vary, so the data set has no Fleiss kappa;
        # the repeats are drawn at random, so the cells rated once per rater are a fair sample.
        assert a.ratings_vary and np.isnan(a.fleiss_kappa)
        kappas.append(a.fleiss_kappa_subset)
        alphas.append(a.krippendorff_alpha)
    assert kappas[0] > kappas[1] > kappas[2]
    assert alphas[0] > alphas[1] > alphas[2]
    # Not a marginal trend: near-perfect, moderate, poor (measured 0.83, 0.54, 0.23; over 15
    # other seeds 0.80-0.84, 0.52-0.56, 0.21-0.26).
    assert kappas[0] > 0.75 and 0.45 < kappas[1] < 0.62 and kappas[2] < 0.3


def test_noiseless_panel_votes_are_the_thresholded_truth(uniform_cells):
    panel = RaterPanel(noise=0.0, bias_sd=0.0, repeat_fraction=0.3)
    votes = rate_pathologists(uniform_cells, panel=panel, seed=2)
    m = np.asarray(uniform_cells.m, dtype=np.float64)
    expected = np.where(m < 0.4, 0.0, np.where(m > 0.6, 1.0, 0.5))
    for e, cell_votes in zip(expected, votes, strict=True):
        assert {v.value for v in cell_votes} == {e}
    a = agreement(votes)
    assert a.fleiss_kappa_subset == pytest.approx(1.0, abs=1e-12)
    assert a.krippendorff_alpha == pytest.approx(1.0, abs=1e-12)
    assert a.values == (0.0, 0.5, 1.0)


def test_binary_scale_gives_zero_one_votes(uniform_cells):
    panel = RaterPanel(noise=0.0, bias_sd=0.0, scale="binary", repeat_fraction=0.0)
    votes = rate_pathologists(uniform_cells, panel=panel, seed=3)
    m = np.asarray(uniform_cells.m, dtype=np.float64)
    got = np.array([[v.value for v in vs] for vs in votes])
    assert got.shape == (len(m), 3)
    np.testing.assert_array_equal(got, np.repeat((m > 0.5)[:, None], 3, axis=1).astype(float))


def test_given_biases_shift_the_raters():
    cells = grid_cells(np.full(50, 0.5))
    panel = RaterPanel(noise=0.0, biases=(-0.2, 0.0, 0.2), repeat_fraction=0.0)
    votes = rate_pathologists(cells, panel=panel, seed=0)
    assert all([v.value for v in vs] == [0.0, 0.5, 1.0] for vs in votes)
    assert [v.rater for v in votes[0]] == ["pathologist1", "pathologist2", "pathologist3"]


def test_repeats_follow_repeat_fraction_and_max_repeats():
    cells = grid_cells(np.random.default_rng(4).uniform(0, 1, 3000))
    panel = RaterPanel.meningioma(repeat_fraction=0.3)
    assert (panel.n_raters, panel.max_repeats) == (2, 3)
    votes = rate_pathologists(cells, panel=panel, seed=5)
    counts = rater_counts(votes)
    repeated = np.array([len(vs) > panel.n_raters for vs in votes])
    assert repeated.mean() == pytest.approx(0.3, abs=0.03)  # 3.5 binomial s.d.
    per_rater = np.array([[c.get(r, 0) for r in panel.rater_ids] for c in counts])
    assert per_rater.min() >= 1 and per_rater.max() == 3  # every rater, never beyond 3
    assert (per_rater[repeated] >= 2).all() and (per_rater[~repeated] == 1).all()
    assert {2, 3} <= set(per_rater[repeated].ravel().tolist())


def test_raters_agree_more_with_themselves_than_with_each_other():
    cells = grid_cells(np.random.default_rng(6).uniform(0, 1, 3000))
    panel = RaterPanel.meningioma(repeat_fraction=1.0, noise=0.2, bias_sd=0.0)
    votes = rate_pathologists(cells, panel=panel, seed=7)
    first = np.array([[v.value for v in vs if v.rater == "pathologist1"][:2] for vs in votes])
    other = np.array([next(v.value for v in vs if v.rater == "pathologist2") for vs in votes])
    intra = np.mean(first[:, 0] == first[:, 1])
    inter = np.mean(first[:, 0] == other)
    assert intra > inter + 0.05


def test_panel_rejects_bad_settings():
    with pytest.raises(ValueError, match="noise"):
        RaterPanel(noise=-0.1)
    with pytest.raises(ValueError, match="biases"):
        RaterPanel(biases=(0.0, 0.1))
    with pytest.raises(ValueError, match="max_repeats"):
        RaterPanel(max_repeats=1, repeat_fraction=0.2)
    with pytest.raises(ValueError, match="thresholds"):
        RaterPanel(thresholds=(0.7, 0.3))
    with pytest.raises(ValueError, match="seed"):
        rate_pathologists(grid_cells([0.5]), seed=0.5)  # type: ignore[arg-type]


# --- consensus ---------------------------------------------------------------------------------


def test_consensus_of_a_noiseless_panel_is_the_upper_threshold(uniform_cells):
    panel = RaterPanel(noise=0.0, bias_sd=0.0, repeat_fraction=0.3)
    votes = rate_pathologists(uniform_cells, panel=panel, seed=8)
    m = np.asarray(uniform_cells.m, dtype=np.float64)
    # Unsure cells (0.4 <= m <= 0.6) get a mean vote of exactly 0.5: a tie, negative by default.
    np.testing.assert_array_equal(consensus(votes), (m > 0.6).astype(int))
    np.testing.assert_array_equal(consensus(votes, tie="positive"), (m >= 0.4).astype(int))


def test_consensus_rules_on_a_hand_case():
    p1, p2, p3 = "pathologist1", "pathologist2", "pathologist3"
    votes = [
        (Vote(p1, 1.0), Vote(p2, 1.0), Vote(p3, 0.0)),  # majority yes, not unanimous
        (Vote(p1, 1.0), Vote(p2, 0.0), Vote(p3, 0.0)),  # one rater says yes
        (Vote(p1, 1.0), Vote(p1, 1.0), Vote(p1, 1.0), Vote(p2, 0.0)),  # repeats: one voice each
        (Vote(p1, 1.0), Vote(p2, 1.0), Vote(p3, 1.0)),
    ]
    np.testing.assert_array_equal(consensus(votes), [1, 0, 0, 1])
    np.testing.assert_array_equal(consensus(votes, repeats="pool"), [1, 0, 1, 1])
    np.testing.assert_array_equal(consensus(votes, rule="unanimous"), [0, 0, 0, 1])
    np.testing.assert_array_equal(consensus(votes, rule="any"), [1, 1, 1, 1])
    with pytest.raises(ValueError, match="rule"):
        consensus(votes, rule="vote")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no votes"):
        consensus([()])


def test_consensus_centroids_and_sets():
    cells = grid_cells([0.9, 0.1, 0.8], kind=[MITOTIC, APOPTOTIC, MITOTIC])
    positive = np.array([1, 0, 1])
    np.testing.assert_allclose(
        consensus_centroids(cells, positive), [[20, 20], [20, 60]]
    )  # 2 x 2 grid
    full = consensus_set(cells, positive, image_id="img")
    assert [a.label for a in full] == [MITOSIS, NON_MITOSIS, MITOSIS]
    assert full.annotations[1].extra["kind"] == "apoptotic"
    assert full.annotations[1].extra["m"] == pytest.approx(0.1)
    assert all(a.box is not None for a in full)
    points = consensus_set(cells, positive, image_id="img", positives_only=True, points_only=True)
    assert [a.extra["cell_id"] for a in points] == [100, 102]
    assert all(a.box is None and a.label == MITOSIS for a in points)
    with pytest.raises(ValueError, match="entries"):
        consensus_centroids(cells, [1, 0])


# --- crowd -------------------------------------------------------------------------------------


def test_crowd_agreement_rises_with_m():
    m = np.random.default_rng(9).uniform(0.0, 1.0, 900)
    cells = grid_cells(m)
    boxes = crowd_boxes(cells, seed=10)
    per_cell = np.zeros(len(cells))
    for b in boxes:
        if b.cell is not None:
            per_cell[b.cell - 100] = b.agreement
    means = [per_cell[(m >= lo) & (m < lo + 0.25)].mean() for lo in (0.0, 0.25, 0.5, 0.75)]
    assert means[0] < means[1] < means[2] < means[3]
    assert means[0] < 0.05 and means[3] > 0.6


def test_certain_mitosis_with_a_perfect_crowd_gets_full_agreement():
    cells = grid_cells([1.0], kind=[MITOTIC])
    panel = CrowdPanel(sensitivity=1.0, fp_per_mpx=0.0, jitter=2.0)
    (box,) = crowd_boxes(cells, panel=panel, seed=11)
    assert box.agreement == 1.0 and box.n_raters == 10 and box.cell == 100
    assert box.raters == panel.rater_ids
    np.testing.assert_allclose(box.box, cells.boxes()[0], atol=3.0)


def test_a_lone_box_never_survives():
    cells = grid_cells(np.zeros(16))  # nobody marks m = 0: only random false positives
    lone = CrowdPanel(n_crowd=1, fp_per_mpx=5000.0)
    assert crowd_boxes(cells, panel=lone, seed=12) == []
    many = CrowdPanel(n_crowd=10, fp_per_mpx=2000.0)
    kept = crowd_boxes(cells, panel=many, seed=12)
    assert all(b.n_raters >= 2 and len(set(b.raters)) == b.n_raters for b in kept)
    assert all(b.cell is None for b in kept)
    loose = crowd_boxes(
        cells, panel=CrowdPanel(n_crowd=10, fp_per_mpx=2000.0, min_raters=1), seed=12
    )
    assert len(loose) > len(kept) and min(b.n_raters for b in loose) == 1


def test_cluster_boxes_keeps_one_box_per_rater():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # rater 0
            [1, 0, 11, 10],  # rater 0 again, overlapping its own box
            [0, 1, 10, 11],  # rater 1
            [50, 50, 60, 60],  # rater 2, alone
        ],
        dtype=float,
    )
    clusters = cluster_boxes(boxes, [0, 0, 1, 2], min_iou=0.3, min_raters=2)
    assert len(clusters) == 1
    (members,) = clusters
    assert len(members) == 2 and 2 in members and ({0, 1} & set(members.tolist()))
    assert cluster_boxes(np.zeros((0, 4)), []) == []


# --- image presence ----------------------------------------------------------------------------


def test_image_presence_hand_case():
    images = ["a", "a", "b", "c", "c"]
    positive = [0, 1, 0, 0, 0]
    assert image_presence(images, positive) == {"a": 1, "b": 0, "c": 0}
    assert image_presence(images, positive, images=["a", "b", "c", "d"]) == {
        "a": 1,
        "b": 0,
        "c": 0,
        "d": 0,
    }
    with pytest.raises(ValueError, match="not among"):
        image_presence(images, positive, images=["a"])


# --- one scene ---------------------------------------------------------------------------------


def test_label_scene_bundles_every_label_kind():
    m = np.random.default_rng(13).uniform(0, 1, 200)
    cells = grid_cells(m)
    labels = label_scene(cells, image_id="scene1", seed=14, size=(600, 600))
    assert len(labels.pathologists) == len(labels.consensus) == 200
    assert labels.pathologists.raters == ["pathologist1", "pathologist2", "pathologist3"]
    assert len(labels.centroids) == int(labels.positive.sum()) > 0
    assert labels.image_label == 1 and labels.truth_image_label == 1
    assert labels.crowd.raters[-1] == "crowd10"
    for s in (labels.pathologists, labels.consensus, labels.centroids, labels.crowd):
        assert s.images["scene1"].width == 600 and s.format == "synthetic"
        assert all("m" in a.extra and "kind" in a.extra for a in s)
    assert all(0.0 < a.agreement <= 1.0 for a in labels.crowd)
    assert agreement(labels.pathologists).to_dict() == agreement(labels.votes).to_dict()
    majority = np.array([a.label == MITOSIS for a in labels.pathologists])
    np.testing.assert_array_equal(majority, labels.positive.astype(bool))


def test_label_scene_is_reproducible_and_streams_are_separate():
    cells = grid_cells(np.random.default_rng(15).uniform(0, 1, 150))
    a = label_scene(cells, image_id="s", seed=16)
    b = label_scene(cells, image_id="s", seed=16)
    c = label_scene(cells, image_id="s", seed=17)
    assert a.votes == b.votes and a.crowd_boxes == b.crowd_boxes
    assert a.votes != c.votes and a.crowd_boxes != c.crowd_boxes
    other_crowd = label_scene(cells, image_id="s", seed=16, crowd=CrowdPanel(n_crowd=5))
    assert other_crowd.votes == a.votes  # changing the crowd leaves the pathologists alone
    gen = label_scene(cells, image_id="s", seed=np.random.default_rng(16))
    assert gen.votes == label_scene(cells, image_id="s", seed=np.random.default_rng(16)).votes


def test_label_scene_of_an_empty_scene():
    labels = label_scene(CellTable.empty(), image_id="blank", seed=0, size=(256, 256))
    assert labels.image_label == 0 and labels.truth_image_label == 0
    assert len(labels.pathologists) == len(labels.centroids) == 0
    assert list(labels.consensus.images) == ["blank"]
    assert all(b.cell is None for b in labels.crowd_boxes)

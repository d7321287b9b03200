"""Figures: valid SVG, the labels a reader needs, byte-identical across runs, the numbers they plot."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

import harness.diagnostics.figures as figures
from harness.diagnostics.figures import SIM1_X, Series, plot_cap, plot_embedding_projection, plot_sweep, project_2d
from harness.errors import HarnessError


def _svg_text(path):
    data = path.read_bytes()
    root = ET.fromstring(data)  # raises on invalid XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert b"<dc:date>" not in data  # no date in the metadata
    return data.decode("utf-8")


def _embeddings(n=40, seed=0):
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(4), n // 4)
    base = rng.normal(size=(n, 8)) + 4.0 * np.eye(8)[cluster]
    return base, base + 0.2 * rng.normal(size=base.shape), rng.zipf(2.0, size=n), cluster


def test_sweep_plot_is_valid_labelled_svg_and_byte_identical(tmp_path):
    series = [Series("Gen_R+S", [1.0, 0.0, 0.5], [[0.5, 0.6], [0.8, 0.82], [0.7, 0.72]])]
    paths = [tmp_path / "a.svg", tmp_path / "b.svg"]
    infos = [plot_sweep(series, p, x_label=SIM1_X, y_label="R@10", references={"Gen_R": [0.75, 0.76]}) for p in paths]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    text = _svg_text(paths[0])
    for label in (SIM1_X, "R@10", "Gen_R+S", "Gen_R (independent of x; band ± 1 sd)", "error bars ± 1 sd"):
        assert label in text
    plotted = infos[0]["series"]
    assert plotted["Gen_R+S"]["x"] == [0.0, 0.5, 1.0]  # sorted by x
    assert plotted["Gen_R+S"]["mean"] == pytest.approx([0.81, 0.71, 0.55])
    assert plotted["Gen_R+S"]["sd"] == pytest.approx([np.std([0.8, 0.82], ddof=1), np.std([0.7, 0.72], ddof=1),
                                                      np.std([0.5, 0.6], ddof=1)])
    assert plotted["Gen_R"] == {"mean": pytest.approx(0.755), "sd": pytest.approx(np.std([0.75, 0.76], ddof=1))}


def test_cap_plot_has_log_caps_and_metric_label(tmp_path):
    series = [Series("Gen_R+S", [5, 10, 50, 500], [[0.10], [0.11], [0.14], [0.15]])]
    info = plot_cap(series, tmp_path / "cap.svg", metric="R@30", references={"Gen_R": [0.11, 0.12]})
    text = _svg_text(tmp_path / "cap.svg")
    assert figures.CAP_X in text and "R@30 on the test set" in text
    for tick in ("<!-- 5 -->", "<!-- 10 -->", "<!-- 50 -->", "<!-- 500 -->"):
        assert tick in text
    assert info["series"]["Gen_R+S"]["sd"] == [0.0, 0.0, 0.0, 0.0]  # one seed: no spread


def test_series_and_sweep_errors():
    with pytest.raises(HarnessError, match="2 x values but 1 value lists"):
        Series("m", [1, 2], [[0.1]]).summary()
    with pytest.raises(HarnessError, match="nothing to plot"):
        plot_sweep([], "unused.svg", x_label="x", y_label="y")


def test_projection_with_tsne_is_deterministic_and_labelled(tmp_path):
    e_r, e_rs, pop, cluster = _embeddings()
    paths = [tmp_path / "a.svg", tmp_path / "b.svg"]
    infos = [plot_embedding_projection({"Gen_R": e_r, "Gen_R+S": e_rs}, pop, p, cluster=cluster, method="tsne")
             for p in paths]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert infos[0]["method"] == "tsne" and infos[0]["n_shown"] == 40
    text = _svg_text(paths[0])
    for label in ("t-SNE dimension 1", "t-SNE dimension 2", "Gen_R: coloured by popularity",
                  "Gen_R+S: coloured by cluster", "cluster 3", "Simulated item cluster",
                  "Item popularity in training + 1 (log scale)"):
        assert label in text


def test_projection_falls_back_to_pca_without_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "_sklearn_available", lambda: False)
    e_r, _, pop, _ = _embeddings()
    info = plot_embedding_projection({"Gen_R": e_r}, pop, tmp_path / "p.svg", max_points=25)
    assert info["method"] == "pca" and info["n_shown"] == 25 and info["n_items"] == 40
    text = _svg_text(tmp_path / "p.svg")
    assert "PCA dimension 1" in text and "coloured by cluster" not in text  # no clusters given: one row
    with pytest.raises(HarnessError, match="t-SNE needs scikit-learn"):
        project_2d(e_r, method="tsne")


def test_pca_is_the_top_two_components_with_fixed_signs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)) * np.array([5.0, 2.0, 0.1])  # principal axes: the first two coordinates
    coords, method = project_2d(x, method="pca")
    assert method == "pca"
    # each axis's largest loading is made positive, so the axes point along +x0 and +x1 on every machine
    assert np.corrcoef(coords[:, 0], x[:, 0])[0, 1] > 0.99
    assert np.corrcoef(coords[:, 1], x[:, 1])[0, 1] > 0.99
    flipped, _ = project_2d(-x, method="pca")
    np.testing.assert_allclose(flipped, -coords, atol=1e-9)


def test_projection_refuses_mismatched_rows(tmp_path):
    e_r, _, pop, _ = _embeddings()
    with pytest.raises(HarnessError, match="Gen_R has 39 embedding rows for 40 items"):
        plot_embedding_projection({"Gen_R": e_r[:39]}, pop, tmp_path / "p.svg")


def test_popularity_colours_span_the_items_shown():
    """SIM2's 30 items have 60-80 training instances each: a log scale from 1 painted them all one colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        popularity = np.arange(60, 90)
        dots = figures._scatter_popularity(ax, np.zeros((30, 2)), popularity)
        assert (dots.norm.vmin, dots.norm.vmax) == (61.0, 90.0)
        colours = dots.to_rgba(dots.get_array())
        assert len({tuple(np.round(c, 3)) for c in colours}) == 30  # every popularity its own colour
        same = figures._scatter_popularity(ax, np.zeros((3, 2)), np.array([5, 5, 5]))
        assert same.norm.vmin < 6.0 < same.norm.vmax  # all equal: a scale around the one value, no error
    finally:
        plt.close(fig)
    assert figures._marker_size(30) > figures._marker_size(3000)

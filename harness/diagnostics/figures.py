"""The paper's figures as SVG files the leaderboard can embed: item-embedding projections (Figures 1, 3),
sweep line plots (Figure 2, Table 4's sweeps) and the cap plot (Figure 4).

Determinism: the same inputs give byte-identical files. Matplotlib runs headless (a bare Figure saved
straight to SVG: no pyplot, no GUI backend), from its default style (a user's matplotlibrc cannot change the output), with a fixed
`svg.hashsalt` (the ids matplotlib writes), no date in the metadata, and text drawn as paths (the file
looks the same without the fonts; the label text stays in the file as comments). Projections use a
fixed seed, and t-SNE runs on one thread (its Barnes-Hut gradient sums across threads in no fixed order).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.io import write_bytes_atomic

SVG_HASH_SALT = "jsr-harness"
REFERENCE_STYLE = {"linestyle": "--", "linewidth": 1.5}

# x-axis labels of the paper's sweeps, so every caller words them the same way.
SIM1_X = "KL divergence between the search and recommendation item popularity distributions"
SIM2_X = "% of queries that match within an item cluster (SIM2, search → recommendation)"
SIM3_X = "% of recommendation item pairs that are relevant together for a query (SIM3, recommendation → search)"
CAP_X = "Training instances allowed per item from the added task (cap, log scale)"


# ---- projections (Figures 1 and 3) ---------------------------------------------------------------------
def project_2d(embeddings: np.ndarray, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(n x 2 coordinates, method used). method: "tsne" (scikit-learn), "pca" (numpy SVD) or "auto"
    (t-SNE when scikit-learn is installed and there are enough points, else PCA)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise HarnessError(f"projection: embeddings must be a 2-D array [items, dims], got shape {x.shape}")
    if method not in ("auto", "tsne", "pca"):
        raise HarnessError(f"projection: method {method!r} is unknown; give 'auto', 'tsne' or 'pca'")
    if method in ("auto", "tsne") and x.shape[0] > 5 and _sklearn_available():
        return _tsne(x, seed), "tsne"
    if method == "tsne":
        raise HarnessError("projection: t-SNE needs scikit-learn (pip install scikit-learn) and more than 5 items")
    return _pca(x), "pca"


def _sklearn_available() -> bool:
    try:
        import sklearn.manifold  # noqa: F401
    except ImportError:
        return False
    return True


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    perplexity = float(min(30.0, (x.shape[0] - 1) / 3.0))
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def _pca(x: np.ndarray) -> np.ndarray:
    """First two principal components; each axis's sign fixed so its largest loading is positive."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:2]
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    coords = centred @ (vt * signs[:, None]).T
    if coords.shape[1] < 2:  # one-dimensional embeddings: a flat second axis
        coords = np.column_stack([coords, np.zeros(len(coords))])
    return coords


def plot_embedding_projection(
    embeddings: Mapping[str, np.ndarray],
    popularity: np.ndarray,
    path: str | os.PathLike,
    *,
    popularity_label: str = "Item popularity in training",
    cluster: np.ndarray | None = None,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 3000,
    subject: str = "Item ID embeddings",
) -> dict:
    """One column per model (e.g. {"Gen_R": E_R, "Gen_R+S": E_RS}, rows = item ID token embeddings);
    the first row colours items by popularity (log scale), a second row by simulation cluster when
    `cluster` is given. Above `max_points` items a fixed-seed sample is drawn (the same for every model).
    Returns what a record needs: the method used and how many items are shown."""
    if not embeddings:
        raise HarnessError("projection: give at least one model's embeddings")
    popularity = np.asarray(popularity)
    n_items = popularity.shape[0]
    for name, matrix in embeddings.items():
        if np.shape(matrix)[0] != n_items:
            raise HarnessError(f"projection: {name} has {np.shape(matrix)[0]} embedding rows for {n_items} items")
    shown = np.arange(n_items)
    if n_items > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(n_items, size=max_points, replace=False))
    has_clusters = cluster is not None and (np.asarray(cluster)[shown] >= 0).any()

    coords, methods = {}, set()
    for name, matrix in embeddings.items():
        coords[name], used = project_2d(np.asarray(matrix)[shown], method=method, seed=seed)
        methods.add(used)
    used = methods.pop() if len(methods) == 1 else "mixed"
    axis_name = {"tsne": "t-SNE", "pca": "PCA"}.get(used, "projection")

    with _style():
        fig, axes = _figure(rows=2 if has_clusters else 1, cols=len(embeddings))
        colour_scale = None
        for col, name in enumerate(embeddings):
            xy = coords[name]
            ax = axes[0][col]
            colour_scale = _scatter_popularity(ax, xy, popularity[shown])
            ax.set_title(f"{name}: coloured by popularity")
            if has_clusters:
                _scatter_clusters(axes[1][col], xy, np.asarray(cluster)[shown])
                axes[1][col].set_title(f"{name}: coloured by cluster")
            for row in axes:
                row[col].set_xlabel(f"{axis_name} dimension 1")
                row[col].set_ylabel(f"{axis_name} dimension 2")
        bar = fig.colorbar(colour_scale, ax=[row[-1] for row in axes][:1])
        bar.set_label(f"{popularity_label} + 1 (log scale)")
        fig.suptitle(f"{subject} projected to 2-D with {axis_name} ({len(shown)} of {n_items} items)")
        _save_svg(fig, path)
    return {"path": str(path), "method": used, "n_items": int(n_items), "n_shown": int(len(shown)), "seed": seed}


def _scatter_popularity(ax, xy: np.ndarray, popularity: np.ndarray):
    from matplotlib.colors import LogNorm

    values = popularity.astype(np.float64) + 1.0
    order = np.argsort(values, kind="stable")  # popular items drawn last, on top
    # The scale spans the items shown, not 1..max: a simulation's items all have tens of instances, and a
    # scale from 1 paints every one of them the same top colour.
    low, high = float(values.min()), float(values.max())
    if high <= low:
        low, high = low / 2, low * 2
    return ax.scatter(
        xy[order, 0], xy[order, 1], c=values[order], s=_marker_size(len(values)), cmap="viridis",
        norm=LogNorm(vmin=low, vmax=high), linewidths=0,
    )


def _marker_size(n_points: int) -> float:
    """Dots that stay visible for a 30-item simulation and do not merge into a blot for 3,000 items."""
    return 36.0 if n_points <= 200 else 14.0 if n_points <= 1000 else 6.0


def _scatter_clusters(ax, xy: np.ndarray, cluster: np.ndarray) -> None:
    import matplotlib

    labels = np.unique(cluster)
    palette = matplotlib.colormaps["tab10" if (labels >= 0).sum() <= 10 else "tab20"]
    for i, c in enumerate(labels[labels >= 0]):
        ax.scatter(*xy[cluster == c].T, s=_marker_size(len(cluster)) * 1.3, color=palette(i % palette.N), linewidths=0, label=f"cluster {int(c)}")
    if (labels < 0).any():
        ax.scatter(*xy[cluster < 0].T, s=_marker_size(len(cluster)) * 1.3, color="lightgrey", linewidths=0, label="no cluster")
    ax.legend(title="Simulated item cluster", fontsize="small", markerscale=max(1.0, 12.0 / _marker_size(len(cluster))), loc="best")


# ---- sweeps and caps (Figures 2 and 4, Table 4) ---------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One model's metric along a sweep: for each x, the values over seeds (error bars: ± 1 sd)."""

    label: str
    x: Sequence[float]
    seed_values: Sequence[Sequence[float]]

    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, mean over seeds, sample standard deviation over seeds; 0 with one seed)."""
        if len(self.x) != len(self.seed_values):
            raise HarnessError(f"series {self.label!r}: {len(self.x)} x values but {len(self.seed_values)} value lists")
        if any(len(v) == 0 for v in self.seed_values):
            raise HarnessError(f"series {self.label!r}: an x value has no seed values")
        means = np.array([np.mean(v) for v in self.seed_values], dtype=np.float64)
        sds = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in self.seed_values], dtype=np.float64)
        return np.asarray(self.x, dtype=np.float64), means, sds


def plot_sweep(
    series: Sequence[Series],
    path: str | os.PathLike,
    *,
    x_label: str,
    y_label: str,
    title: str | None = None,
    references: Mapping[str, Sequence[float]] | None = None,
    log_x: bool = False,
) -> dict:
    """Lines with ± 1 sd error bars over seeds, one per series; each reference (a model that does not
    depend on x, e.g. Gen_R while the search data is swept) is a dashed horizontal line with a ± 1 sd
    band. Returns the plotted numbers (means and sds) for the record."""
    if not series and not references:
        raise HarnessError("sweep plot: nothing to plot (no series and no references)")
    plotted: dict[str, dict] = {}
    with _style():
        fig, axes = _figure(rows=1, cols=1, size=(7.0, 4.5))
        ax = axes[0][0]
        for s in series:
            x, mean, sd = s.summary()
            order = np.argsort(x, kind="stable")
            ax.errorbar(x[order], mean[order], yerr=sd[order], marker="o", capsize=3, label=s.label)
            plotted[s.label] = {"x": x[order].tolist(), "mean": mean[order].tolist(), "sd": sd[order].tolist()}
        for i, (label, values) in enumerate((references or {}).items()):
            values = np.asarray(values, dtype=np.float64)
            if values.size == 0:
                raise HarnessError(f"sweep plot: reference {label!r} has no seed values")
            mean = float(values.mean())
            sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
            colour = f"C{(len(series) + i) % 10}"
            ax.axhline(mean, color=colour, label=f"{label} (independent of x; band ± 1 sd)", **REFERENCE_STYLE)
            if sd > 0:
                ax.axhspan(mean - sd, mean + sd, color=colour, alpha=0.15, linewidth=0)
            plotted[label] = {"mean": mean, "sd": sd}
        if log_x:
            ax.set_xscale("log")
            xs = sorted({float(v) for s in series for v in s.x})
            if xs:
                ax.set_xticks(xs, [f"{v:g}" for v in xs])
                ax.minorticks_off()
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
        ax.legend(title="Model (mean over seeds, error bars ± 1 sd)", fontsize="small")
        if title:
            ax.set_title(title)
        _save_svg(fig, path)
    return {"path": str(path), "series": plotted}


def plot_cap(
    series: Sequence[Series],
    path: str | os.PathLike,
    *,
    metric: str,
    references: Mapping[str, Sequence[float]] | None = None,
    title: str | None = None,
) -> dict:
    """Figure 4: the metric (e.g. "R@30") against the cap on training instances per item from the added
    task, caps on a log axis; uncapped models and the task-specific reference go in `references`."""
    return plot_sweep(series, path, x_label=CAP_X, y_label=f"{metric} on the test set", title=title,
                      references=references, log_x=True)


def plot_id_schemes(
    values: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    metric: str,
    title: str | None = None,
) -> dict:
    """The `ids` experiment: for each item-ID scheme (x), the task-specific and the joint model's metric side by
    side (bars: mean over seeds, error bars ± 1 sd). `values`: {scheme: (task-specific seeds, joint seeds)}."""
    if not values:
        raise HarnessError("ID-scheme plot: nothing to plot")
    plotted: dict[str, dict] = {}
    with _style():
        fig, axes = _figure(rows=1, cols=1, size=(max(5.0, 1.3 * len(values) + 2.0), 4.5))
        ax = axes[0][0]
        x = np.arange(len(values))
        width = 0.38
        for offset, (role, index) in ((-width / 2, ("task-specific", 0)), (width / 2, ("joint", 1))):
            series = Series(role, list(x), [list(v[index]) for v in values.values()])
            _, mean, sd = series.summary()
            ax.bar(x + offset, mean, width, yerr=sd, capsize=3, label=role)
            plotted[role] = {"schemes": list(values), "mean": mean.tolist(), "sd": sd.tolist()}
        ax.set_xticks(x, list(values), rotation=20, ha="right")
        ax.set_ylabel(f"{metric} on the test set")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(title="Model (mean over seeds, ± 1 sd)", fontsize="small")
        if title:
            ax.set_title(title)
        _save_svg(fig, path)
    return {"path": str(path), "series": plotted}


# ---- matplotlib plumbing ------------------------------------------------------------------------------
@contextlib.contextmanager
def _style():
    """Matplotlib's default style (a user's matplotlibrc cannot change the output) plus our SVG settings.
    No backend is chosen: figures are built with matplotlib.figure.Figure and saved straight to SVG,
    which never touches pyplot or a GUI."""
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(
        {"svg.hashsalt": SVG_HASH_SALT, "svg.fonttype": "path"}
    ):
        yield


def _figure(rows: int, cols: int, size: tuple[float, float] | None = None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size or (5.0 * cols + 1.0, 4.5 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [list(row) for row in axes]


def _save_svg(fig, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    write_bytes_atomic(path, buffer.getvalue())

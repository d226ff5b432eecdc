"""Figures written by runs and scripts: 2D scatter plots, flow trajectories and image grids (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # runs are headless; never try to open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _finish(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_samples_2d(path, samples, reference=None, title: str = "", lim: float | None = None) -> Path:
    """Scatter of 2D model samples, beside reference data when given."""
    samples = np.asarray(samples)
    panels = [("model samples", samples)] + ([("data", np.asarray(reference))] if reference is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    lim = lim or float(np.quantile(np.abs(np.concatenate([p for _, p in panels])), 0.995)) * 1.1
    for ax, (name, pts) in zip(axes[0], panels, strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color="C0" if name == "model samples" else "C1")
        ax.set(title=name, xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_trajectories_2d(path, trajectory, title: str = "") -> Path:
    """Paths of a 2D flow: ``trajectory`` has shape (num_times, num_points, 2)."""
    traj = np.asarray(trajectory)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(traj[:, :, 0], traj[:, :, 1], color="olive", alpha=0.15, lw=0.6)
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=3, color="black", label="t = 0 (base)")
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=3, color="C0", label="t = 1 (samples)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set(aspect="equal", title=title or "flow trajectories")
    return _finish(fig, path)


def plot_image_grid(path, images, title: str = "", ncols: int = 8) -> Path:
    """Grid of channels-first images in [-1, 1], shape (n, C, H, W) or (n, H*W) for square single-channel."""
    imgs = np.asarray(images)
    if imgs.ndim == 2:
        side = int(round(np.sqrt(imgs.shape[1])))
        imgs = imgs.reshape(-1, 1, side, side)
    n = imgs.shape[0]
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols, nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = np.clip((imgs[i].transpose(1, 2, 0) + 1) / 2, 0, 1)
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)

"""Figures for people: wavefront maps, closed-loop convergence, donut stamps with model residuals, a night.

All functions draw on `matplotlib.figure.Figure` objects (no pyplot state, no screen) and write PNGs.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from .instrument import OBSCURATION

__all__ = [
    "draw_wavefront_map",
    "draw_zernike_bars",
    "plot_convergence",
    "plot_night",
    "plot_stamps",
    "wavefront_map",
]


def wavefront_map(noll: Sequence[int], coefs_um: Sequence[float], *, size: int = 128) -> NDArray[np.float64]:
    """Evaluate a Zernike series over the annular pupil.

    Parameters
    ----------
    noll : sequence of `int`
        Noll indices of ``coefs_um``.
    coefs_um : sequence of `float`
        Coefficients, micrometres.
    size : `int`
        Pixels across the pupil.

    Returns
    -------
    opd : `numpy.ndarray`, shape (size, size)
        Wavefront in nanometres, NaN outside the annulus; ``opd[row = pupil y, col = pupil x]``.
    """
    jmax = max(int(n) for n in noll)
    coef = np.zeros(jmax + 1)
    coef[np.asarray(noll, dtype=int)] = np.asarray(coefs_um, dtype=float) * 1000.0
    zernike = galsim.zernike.Zernike(coef, R_outer=1.0, R_inner=OBSCURATION)
    u = np.linspace(-1.0, 1.0, size)
    ux, uy = np.meshgrid(u, u)
    r = np.hypot(ux, uy)
    opd = zernike(ux, uy)
    return np.where((r <= 1.0) & (r >= OBSCURATION), opd, np.nan)


def draw_wavefront_map(ax: Axes, noll: Sequence[int], coefs_um: Sequence[float], *, title: str = "") -> None:
    """Draw `wavefront_map` on ``ax`` with a colour bar in nm.

    Parameters
    ----------
    ax : `matplotlib.axes.Axes`
        Where to draw.
    noll : sequence of `int`
        Noll indices of ``coefs_um``.
    coefs_um : sequence of `float`
        Coefficients, micrometres.
    title : `str`, optional
        Axes title; default "wavefront deviation".
    """
    opd = wavefront_map(noll, coefs_um)
    limit = float(np.nanmax(np.abs(opd))) or 1.0
    image = ax.imshow(opd, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit, extent=(-1, 1, -1, 1))
    ax.set_title(title or "wavefront deviation")
    ax.set_xlabel("pupil x")
    ax.set_ylabel("pupil y")
    ax.figure.colorbar(image, ax=ax, label="nm")


def draw_zernike_bars(
    ax: Axes, noll: Sequence[int], coefs_um: Sequence[float], errors_um: Sequence[float] | None = None
) -> None:
    """Draw Zernike coefficients (nm) as bars, with 1-sigma error bars when ``errors_um`` is given.

    Parameters
    ----------
    ax : `matplotlib.axes.Axes`
        Where to draw.
    noll : sequence of `int`
        Noll indices of ``coefs_um`` (the bar labels).
    coefs_um : sequence of `float`
        Coefficients, micrometres.
    errors_um : sequence of `float`, optional
        1-sigma errors, micrometres.
    """
    values = np.asarray(coefs_um, dtype=float) * 1000.0
    errors = None if errors_um is None else np.asarray(errors_um, dtype=float) * 1000.0
    ax.bar(np.arange(len(values)), values, yerr=errors, color="tab:blue", ecolor="k", capsize=2)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(values)), [str(j) for j in noll], fontsize=7, rotation=90)
    ax.set_xlabel("Noll index")
    ax.set_ylabel("deviation (nm)")
    ax.grid(axis="y", alpha=0.3)


def plot_convergence(history: Sequence[Mapping[str, float]], path: str | Path, *, title: str = "") -> Path:
    """Plot a closed loop's hexapod position and Zernikes per iteration.

    Parameters
    ----------
    history : sequence of mappings
        One entry per iteration with keys ``x``, ``y``, ``z`` (residual misalignment, mm) and ``z4``, ``z7``,
        ``z8`` (measured deviation, nm); optional ``x_ops``... are ignored.
    path : `str` or `pathlib.Path`
        PNG file to write.
    title : `str`
        Figure title.

    Returns
    -------
    path : `pathlib.Path`
    """
    path = Path(path)
    iterations = np.arange(len(history))
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_hex, ax_zern = fig.subplots(1, 2)
    for key, style in (("x", "o-"), ("y", "s-"), ("z", "^-")):
        ax_hex.plot(iterations, [h[key] for h in history], style, label=f"{key} (mm)")
    ax_hex.axhspan(-0.004, 0.004, color="tab:green", alpha=0.15, label="|z| < 0.004 mm")
    ax_hex.axhline(0.0, color="k", lw=0.6)
    ax_hex.set_xlabel("iteration (triplet)")
    ax_hex.set_ylabel("M2 misalignment left (mm)")
    ax_hex.set_title("hexapod: residual misalignment")
    ax_hex.legend(fontsize=8)
    for key, style in (("z4", "o-"), ("z7", "s-"), ("z8", "^-")):
        ax_zern.plot(iterations, [h[key] for h in history], style, label=key.upper())
    ax_zern.axhline(0.0, color="k", lw=0.6)
    ax_zern.set_xlabel("iteration (triplet)")
    ax_zern.set_ylabel("measured deviation (nm)")
    ax_zern.set_title("wavefront: focus and coma")
    ax_zern.legend(fontsize=8)
    for ax in (ax_hex, ax_zern):
        ax.set_xticks(iterations)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def plot_stamps(
    stamps: Sequence[Mapping[str, NDArray]],
    path: str | Path,
    *,
    noll: Sequence[int] | None = None,
    coefs_um: Sequence[float] | None = None,
    errors_um: Sequence[float] | None = None,
    notes: str = "",
    title: str = "",
    model_label: str = "model",
) -> Path:
    """Plot donut stamps, their models and residuals, and optionally the wavefront estimate.

    Parameters
    ----------
    stamps : sequence of mappings
        One per donut image with ``data`` and optionally ``model`` (same shape) and a ``label``
        (e.g. "intra #0"). Residuals are shown as (data - model) in units of the data's peak.
    path : `str` or `pathlib.Path`
        PNG file to write.
    noll, coefs_um : sequences, optional
        Zernike estimate to draw in a last column, as a wavefront map and as bars.
    errors_um : sequence, optional
        1-sigma errors of ``coefs_um``, drawn as error bars.
    notes : `str`
        Text under the estimate (e.g. the hexapod correction).
    title : `str`
        Figure title.
    model_label : `str`
        Label of the model row: what the models are (e.g. which estimate they draw).

    Returns
    -------
    path : `pathlib.Path`
    """
    path = Path(path)
    n = len(stamps)
    extra_col = 1 if noll is not None and coefs_um is not None else 0
    fig = Figure(figsize=(3.0 * (n + extra_col), 8.4), layout="constrained")
    axes = fig.subplots(3, max(n, 1) + extra_col, squeeze=False)
    for i, stamp in enumerate(stamps):
        data = np.asarray(stamp["data"], dtype=float)
        peak = float(np.nanmax(data)) or 1.0
        model = stamp.get("model")
        axes[0, i].imshow(data, origin="lower", cmap="magma")
        # Wrapped to the panel: a label can carry why the pair's model fit failed.
        label = textwrap.fill(str(stamp.get("label", f"donut {i}")), width=45)
        axes[0, i].set_title(label, fontsize=9)
        if model is not None:
            model = np.asarray(model, dtype=float)
            axes[1, i].imshow(model, origin="lower", cmap="magma", vmin=np.nanmin(data), vmax=peak)
            resid = axes[2, i].imshow(
                (data - model) / peak, origin="lower", cmap="RdBu_r", vmin=-0.2, vmax=0.2
            )
            if i == n - 1:
                fig.colorbar(resid, ax=axes[2, i], label="(data - model) / peak")
        for row in range(3):
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
    axes[0, 0].set_ylabel("data")
    axes[1, 0].set_ylabel(model_label)
    axes[2, 0].set_ylabel("residual")
    if extra_col:
        draw_wavefront_map(axes[0, n], noll, coefs_um)  # type: ignore[arg-type]
        draw_zernike_bars(axes[1, n], noll, coefs_um, errors_um)  # type: ignore[arg-type]
        axes[2, n].axis("off")
        axes[2, n].text(0.0, 1.0, notes, va="top", ha="left", family="monospace", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


def plot_night(
    results: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "",
    structure_note_level: float | None = None,
) -> Path:
    """Plot a reprocessed night, one point per triplet: focus, the other low orders, the hexapod correction,
    the seeing with the number of donuts used, and the fit quality (reduced chi-square, residual structure).

    Parameters
    ----------
    results : sequence of mappings
        The JSON lines of ``auxtelwep reprocess`` (`pipeline.WavefrontResult.to_json_dict` for a processed
        triplet; ``{"rejected": reason, ...}`` otherwise, counted in the title). Triplets are drawn in
        OBSID order of their intra-focal image, labelled by its SEQNUM, or DAYOBS:SEQNUM when the results
        span several nights; the lines are broken between nights.
    path : `str` or `pathlib.Path`
        PNG file to write.
    title : `str`
        Figure title (the number of triplets and rejections is added).
    structure_note_level : `float`, optional
        Residual structure above which ``auxtelwep process`` adds a note, drawn as a line.

    Returns
    -------
    path : `pathlib.Path`
    """
    path = Path(path)
    done = sorted((r for r in results if "zernikes" in r), key=lambda r: str(r["intra"]))
    n_rejected = sum("rejected" in r for r in results)
    ids = [_night_and_seqnum(str(r["intra"])) for r in done]  # (DAYOBS, SEQNUM)
    several_nights = len({night for night, _ in ids}) > 1
    # An empty slot between nights: matplotlib breaks a line at NaN, so no line joins two nights.
    new_night = [i > 0 and ids[i][0] != ids[i - 1][0] for i in range(len(ids))]
    x = np.arange(len(done)) + np.cumsum(new_night, dtype=int)
    slots = np.arange(x[-1] + 1 if done else 0)

    def on_slots(values: Sequence[float]) -> NDArray[np.float64]:
        out = np.full(slots.size, np.nan)
        out[x] = values
        return out

    fig = Figure(figsize=(16, 7.5), layout="constrained")
    (ax_z4, ax_low, ax_hex), (ax_see, ax_chi2, ax_structure) = fig.subplots(2, 3, sharex=True)

    def zernike(result: Mapping[str, Any], j: int, key: str) -> float:
        terms = result["zernikes"]
        if j not in terms["noll"]:
            return np.nan
        value = terms[key][terms["noll"].index(j)]
        return np.nan if value is None else 1000.0 * value

    def series(ax: Axes, js: Sequence[int]) -> None:
        for j in js:
            values = [zernike(r, j, "um") for r in done]
            if np.all(np.isnan(values)):
                continue
            errors = on_slots([zernike(r, j, "um_err") for r in done])
            ax.errorbar(slots, on_slots(values), yerr=errors, fmt="o-", ms=3, capsize=2, label=f"Z{j}")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_ylabel("deviation from design (nm)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=7, loc="best")

    series(ax_z4, [4])
    ax_z4.set_title("focus")
    series(ax_low, range(5, 12))
    ax_low.set_title("astigmatism, coma, trefoil, spherical")
    for axis, style in (("x", "o-"), ("y", "s-"), ("z", "^-")):
        values = [r["hexapod"][f"{axis}_mm"] for r in done]
        errors = [(r.get("hexapod_err") or {}).get(f"{axis}_mm") or 0.0 for r in done]
        ax_hex.errorbar(
            slots, on_slots(values), yerr=on_slots(errors), fmt=style, ms=3, capsize=2, label=axis
        )
    ax_hex.axhline(0.0, color="k", lw=0.6)
    ax_hex.set_ylabel("hexapod correction (mm)")
    ax_hex.set_title("correction (full, before gains and limits)")
    ax_hex.legend(fontsize=8)
    seeing = [_median_fwhm(r) for r in done]
    ax_see.plot(slots, on_slots(seeing), "o-", ms=3, color="tab:purple", label='fitted seeing (")')
    ax_see.set_ylabel('FWHM (")')
    ax_see.set_ylim(bottom=0.0, top=_top(seeing, 2.0))
    ax_see.set_title("seeing (median over the donuts used) and donuts used")
    ax_used = ax_see.twinx()
    ax_used.bar(x, [r["zernikes"]["donuts_used"] for r in done], color="tab:gray", alpha=0.3)
    ax_used.set_ylabel("donuts used (bars)")
    ax_see.set_zorder(ax_used.get_zorder() + 1)  # the seeing line in front of the bars
    ax_see.patch.set_visible(False)
    labels = [f"{night}:{seq}" if several_nights else seq for night, seq in ids]
    step = max(1, len(done) // 20)
    chi2 = [r["zernikes"].get("reduced_chi2") or np.nan for r in done]
    ax_chi2.plot(slots, on_slots(chi2), "o-", ms=3, color="tab:brown")
    ax_chi2.axhline(1.0, color="k", lw=0.6)
    ax_chi2.set_ylim(bottom=0.0, top=_top(chi2, 2.0))  # never a zoom into the noise around 1
    ax_chi2.set_ylabel("reduced chi-square")
    ax_chi2.set_title("fit: reduced chi-square (grows with the flux)")
    structure = [r["zernikes"].get("residual_structure") for r in done]
    percent = [np.nan if v is None else 100.0 * v for v in structure]
    ax_structure.plot(slots, on_slots(percent), "o-", ms=3, color="tab:red")
    ax_structure.set_ylim(bottom=0.0, top=_top(percent, 10.0))
    if structure_note_level is not None:
        ax_structure.axhline(
            100.0 * structure_note_level, color="tab:red", lw=0.8, ls="--", label="note level"
        )
        ax_structure.legend(fontsize=7)
    ax_structure.set_ylabel("residual structure (% of the donut light)")
    ax_structure.set_title("fit: structure the model does not hold")
    for ax in (ax_see, ax_chi2, ax_structure):
        ax.set_xticks(x[::step], labels[::step], rotation=90, fontsize=7)
        ax.set_xlabel("intra-focal DAYOBS:SEQNUM" if several_nights else "intra-focal SEQNUM")
    for ax in (ax_z4, ax_low, ax_hex, ax_see, ax_chi2, ax_structure):
        ax.grid(alpha=0.3)
    counts = f"{len(done)} triplets processed, {n_rejected} rejections (reasons in the JSON lines)"
    fig.suptitle(f"{title}: {counts}" if title else counts)
    fig.savefig(path, dpi=100)
    return path


def _top(values: Sequence[float], least: float) -> float:
    """Upper axis limit: 20 % above the largest finite value, and at least ``least``."""
    return max([least, *(1.2 * v for v in values if np.isfinite(v))])


def _night_and_seqnum(obsid: str) -> tuple[str, str]:
    """``("20240624", "7")`` for ``AT_O_20240624_000007``; ``("", obsid)`` for an OBSID of another form."""
    parts = obsid.rsplit("_", 2)
    if len(parts) != 3:
        return "", obsid
    return parts[1], parts[2].lstrip("0") or "0"


def _median_fwhm(result: Mapping[str, Any]) -> float:
    """Median over the donuts used of their mean fitted FWHM, arcsec (NaN without any)."""
    fwhms = [
        float(np.mean(d["fwhm_arcsec"]))
        for d in result["detection"]["donuts"]
        if d.get("used") and d.get("fwhm_arcsec") and None not in d["fwhm_arcsec"]
    ]
    return float(np.median(fwhms)) if fwhms else np.nan

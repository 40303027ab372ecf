"""Figures: solutions and errors, training histories, comparisons and KAN diagrams.

Everything draws with matplotlib's Agg backend (no window is ever opened), returns the
``Figure`` and writes a PNG when ``path`` is given.

2-D maps are drawn only over the domain: test points of a non-rectangular domain (an
L-shape, a plate with holes, a ball's middle slice) are the bounding-box grid kept
inside, so the grid cells without a point stay blank; scattered points are triangulated
and the triangles whose centre lies outside the domain are dropped. Models with several
outputs get one row of panels per output column.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_solution", "plot_history", "plot_result", "plot_kan", "plot_compare"]


def _plt():
    """pyplot, leaving the user's backend alone (inline in notebooks, a window on a
    desktop). Only a session that has no display and no backend chosen gets Agg, which
    matplotlib itself falls back to; the figures are also saved to files when asked."""
    import matplotlib
    import os as _os
    if not _os.environ.get("DISPLAY") and "MPLBACKEND" not in _os.environ and \
            "inline" not in matplotlib.get_backend().lower() and "ipykernel" not in _sys_modules():
        try:
            matplotlib.use("Agg")
        except Exception:  # noqa: BLE001 - a backend already in use: keep it
            pass
    import matplotlib.pyplot as plt
    return plt


def _sys_modules():
    import sys
    return sys.modules


def _finish(fig, path):
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _variables(result, d):
    v = getattr(result, "variables", None)
    if v and len(v) == d:
        return list(v)
    return ["x", "y", "z"][:d] if d <= 3 else [f"x{i + 1}" for i in range(d)]


def _plane(x):
    """Reduce test points of dimension > 2 to a 2-D slice: keep points whose trailing
    coordinates equal the grid value nearest the middle (the last time for space-time
    points is not special: the middle slice is shown). Returns a boolean mask."""
    keep = np.ones(x.shape[0], bool)
    for j in range(2, x.shape[1]):
        vals = np.unique(x[keep, j])
        mid = vals[np.argmin(np.abs(vals - 0.5 * (vals.min() + vals.max())))]
        keep &= np.isclose(x[:, j], mid)
    return keep


# Points that fill at least this share of the tensor grid of their coordinates are drawn
# as that grid with the empty cells masked (an L-shape fills 3/4, a disk pi/4); sparser
# point sets are scattered points and are triangulated instead.
_GRID_FILL = 0.25


def _as_grid(x, v):
    """(X, Y, V) when the 2-D points are (part of) a tensor grid; V is a masked array,
    masked where the grid has no point (outside the domain). None for scattered points."""
    xs, ys = np.unique(x[:, 0]), np.unique(x[:, 1])
    if xs.size < 2 or ys.size < 2 or x.shape[0] < _GRID_FILL * xs.size * ys.size:
        return None
    V = np.full((ys.size, xs.size), np.nan)
    V[np.searchsorted(ys, x[:, 1]), np.searchsorted(xs, x[:, 0])] = v
    X, Y = np.meshgrid(xs, ys)
    return X, Y, np.ma.masked_invalid(V)


def _map(ax, x, v, title, names, cmap="viridis", vmin=None, vmax=None, inside=None):
    """A colour map of v over 2-D points x. ``inside(points (n, 2)) -> bool (n,)`` (the
    domain, when known) masks the triangles of scattered points that leave it."""
    g = _as_grid(x, v)
    if g is not None:
        m = ax.pcolormesh(g[0], g[1], g[2], shading="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    else:
        import matplotlib.tri as mtri
        tri = mtri.Triangulation(x[:, 0], x[:, 1])
        if inside is not None:
            centres = x[tri.triangles].mean(axis=1)
            tri.set_mask(~np.asarray(inside(centres), bool))
        m = ax.tripcolor(tri, v, shading="gouraud", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.figure.colorbar(m, ax=ax, shrink=0.85)
    ax.set_title(title)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_aspect("auto")


def _domain_test(result):
    """``contains`` of the result's domain (from its JSON spec), or None when unknown."""
    spec = getattr(result, "domain_spec", None)
    if not spec:
        return None
    try:
        from .domains import domain_from_spec
        return domain_from_spec(spec).contains
    except Exception:  # noqa: BLE001 - an unreadable spec only costs the masking
        return None


def _n_outputs(result):
    if result.test_x is None:
        return 1
    return int(np.asarray(result.predict(result.test_x[:1])).reshape(1, -1).shape[1])


def _output_name(result, j, m):
    names = getattr(result, "output_names", None)
    if names and len(names) == m:
        return str(names[j])
    return "u" if m == 1 else f"u[{j}]"


def _solution_panels(result, axes, component=0):
    """Draw prediction / exact / |error| of one output column on up to three axes."""
    x = result.test_x
    if x is None:
        for ax in axes:
            ax.text(0.5, 0.5, "no test points", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        return
    full = np.asarray(result.predict(x))
    m = full.reshape(x.shape[0], -1).shape[1]
    pred = full.reshape(x.shape[0], -1)[:, component]
    exact = None if result.test_u is None else np.asarray(result.test_u).reshape(x.shape[0], -1)[:, component]
    label = _output_name(result, component, m)
    head = "" if m == 1 else f"{label}: "
    d = x.shape[1]
    names = _variables(result, d)
    contains = _domain_test(result)
    if d == 1:
        order = np.argsort(x[:, 0])
        xs = x[order, 0]
        ax = axes[0]
        ax.plot(xs, pred[order], label="prediction")
        if exact is not None:
            ax.plot(xs, exact[order], "--", label="exact")
        ax.set_xlabel(names[0])
        ax.set_ylabel(label)
        ax.set_title(head + "solution")
        ax.legend()
        if exact is not None:
            axes[1].plot(xs, np.abs(pred - exact)[order])
            axes[1].set_yscale("log")
            axes[1].set_title(head + "|error|")
            axes[1].set_xlabel(names[0])
        else:
            axes[1].set_axis_off()
        axes[2].set_axis_off()
        return
    suffix = ""
    inside = contains
    if d > 2:
        keep = _plane(x)
        rest = x[keep][0, 2:]
        fixed = ", ".join(f"{names[j]}={x[keep][0, j]:.3g}" for j in range(2, d))
        suffix = f" ({fixed})"
        x, pred = x[keep], pred[keep]
        exact = None if exact is None else exact[keep]
        if contains is not None:
            inside = lambda p, rest=rest: contains(np.hstack([p, np.tile(rest, (p.shape[0], 1))]))  # noqa: E731
    _map(axes[0], x, pred, head + "prediction" + suffix, names, inside=inside)
    if exact is not None:
        _map(axes[1], x, exact, head + "exact" + suffix, names, inside=inside)
        _map(axes[2], x, np.abs(pred - exact), head + "|error|" + suffix, names, cmap="magma",
             inside=inside)
    else:
        axes[1].set_axis_off()
        axes[2].set_axis_off()


def plot_solution(result, path=None):
    """Prediction, exact solution and absolute error on the result's test points: maps for
    2-D domains (x-t image for 1-D space-time; a middle slice for 3-D and up), drawn only
    over the domain, lines in 1-D. One row per output column (u, v, p of a system)."""
    plt = _plt()
    m = _n_outputs(result)
    fig, axes = plt.subplots(m, 3, figsize=(15, 4.2 * m), squeeze=False)
    for j in range(m):
        _solution_panels(result, axes[j], component=j)
    fig.suptitle(getattr(result, "name", ""))
    fig.tight_layout()
    return _finish(fig, path)


def _history_axes(result, ax, xkey):
    h = result.history
    xs = h.get(xkey)
    if xs is None or len(xs) == 0:
        ax.text(0.5, 0.5, f"no history ({xkey})", ha="center", va="center", transform=ax.transAxes)
        return
    drawn = False
    for key, style in (("loss", "-"), ("l2_relative", "-")):
        ys = h.get(key)
        if ys is None or len(ys) != len(xs):
            continue
        ok = np.isfinite(ys) & (ys > 0)
        if ok.any():
            ax.plot(xs[ok], ys[ok], style, label=key)
            drawn = True
    if drawn:
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("step" if xkey == "step" else "time (s)")
    ax.grid(True, which="both", alpha=0.3)


def plot_history(result, ax=None, path=None):
    """Loss and relative L2 error (log scale) against step and against wall time.

    ``ax``: draw only the against-step panel onto this Axes (a path string here is taken
    as ``path``). Returns the Figure."""
    if isinstance(ax, (str, os.PathLike)):
        ax, path = None, ax
    plt = _plt()
    if ax is not None:
        _history_axes(result, ax, "step")
        ax.set_title("training history")
        return _finish(ax.figure, path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _history_axes(result, axes[0], "step")
    _history_axes(result, axes[1], "time")
    axes[0].set_title("vs step")
    axes[1].set_title("vs time")
    fig.tight_layout()
    return _finish(fig, path)


def plot_result(result, path=None):
    """Solution, exact, error and loss history in one figure (one row of solution panels
    per output column; the history in the first row)."""
    plt = _plt()
    m = _n_outputs(result)
    fig, grid = plt.subplots(m, 4, figsize=(20, 4.2 * m), squeeze=False)
    for j in range(m):
        _solution_panels(result, grid[j, :3], component=j)
        if j:
            grid[j, 3].set_axis_off()
    axes = grid[0]
    _history_axes(result, axes[3], "step")
    axes[3].set_title("training history")
    l2 = result.metrics.get("l2_relative")
    title = getattr(result, "name", "")
    if isinstance(l2, (int, float)):
        title += f"  (relative L2 {l2:.3g})"
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def plot_compare(results, path=None):
    """Several results of one problem: error (relative L2) against wall time and the
    absolute-error map of each side by side. ``results``: dict name -> Result."""
    plt = _plt()
    names = list(results)
    n = max(1, len(names))
    fig = plt.figure(figsize=(max(10, 4.5 * n), 8.5))
    gs = fig.add_gridspec(2, n, height_ratios=[1, 1.1])
    ax = fig.add_subplot(gs[0, :])
    for name in names:
        h = results[name].history
        t, e = h.get("time"), h.get("l2_relative")
        if t is None or e is None or len(t) != len(e):
            continue
        ok = np.isfinite(e) & (e > 0)
        ax.plot(t[ok], e[ok], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("relative L2 error")
    ax.grid(True, which="both", alpha=0.3)
    if names:
        ax.legend()
    errs = {}
    for name in names:
        r = results[name]
        if r.test_x is not None and r.test_u is not None:
            errs[name] = np.abs(r.predict(r.test_x)[:, 0] - r.test_u[:, 0])
    vmax = max((float(e.max()) for e in errs.values() if e.size), default=None)
    for j, name in enumerate(names):
        r = results[name]
        a = fig.add_subplot(gs[1, j])
        if name not in errs:
            a.set_axis_off()
            a.set_title(f"{name}: no reference")
            continue
        x, err = r.test_x, errs[name]
        names_v = _variables(r, x.shape[1])
        if x.shape[1] == 1:
            o = np.argsort(x[:, 0])
            a.semilogy(x[o, 0], err[o])
            a.set_xlabel(names_v[0])
            a.set_title(f"{name}: |error|")
        else:
            if x.shape[1] > 2:
                keep = _plane(x)
                x, err = x[keep], err[keep]
            inside = _domain_test(r) if x.shape[1] == 2 and r.test_x.shape[1] == 2 else None
            _map(a, x, err, f"{name}: |error|", names_v, cmap="magma", vmin=0.0, vmax=vmax,
                 inside=inside)
    fig.tight_layout()
    return _finish(fig, path)


# --------------------------------------------------------------------------- KAN diagram

def _layer_curves(model, x, n_curve=101):
    """Per layer: (xs (P, in), phi (P, in, out)) with xs sorted per input column."""
    import torch
    out = []
    ref = next(iter(model.parameters()))
    if x is not None:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach())
        x = x.to(device=ref.device, dtype=ref.dtype)
        ins = model.layer_inputs(x)
    else:
        ins = [None] * len(model.layers)
    with torch.no_grad():
        for layer, xi in zip(model.layers, ins):
            if xi is None:
                lo = layer.basis.lo.detach()
                hi = layer.basis.hi.detach()
                s = torch.linspace(0, 1, n_curve, dtype=lo.dtype, device=lo.device)
                xi = lo[None, :] + (hi - lo)[None, :] * s[:, None]
            else:
                xi = torch.sort(xi, dim=0).values
            phi = layer.edge_values(xi)
            out.append((xi.cpu().numpy(), phi.cpu().numpy()))
    return out


def plot_kan(model, x=None, path=None, beta=3.0, scale=1.0, title=None, in_vars=None, out_vars=None):
    """Network diagram in the KAN papers' style: one row of nodes per layer (inputs at the
    bottom), every edge drawn as a small plot of its activation φ(x) over the layer's
    input range (the samples' range when ``x`` (N, d) is given, else the grid range). An
    edge's opacity is its strength, mean |φ| normalised by the strongest edge of its layer
    (``tanh(beta * s)/tanh(beta)``-shaped so weak edges stay visible; ``beta=None`` for
    plain proportional alpha). Multiplication nodes are drawn as squares marked ×, fed by
    their two sub-nodes; symbolic edges are drawn in red."""
    plt = _plt()
    curves = _layer_curves(model, x)
    widths = [tuple(w) if isinstance(w, (list, tuple)) else (int(w), 0) for w in model.widths]
    L = len(model.layers)
    n_max = max(max(s + m for s, m in widths), max(l.in_dim * l.out_dim for l in model.layers) / 3, 1)
    fig_w = max(5.0, min(18.0, 1.1 * n_max)) * scale
    fig_h = max(3.0, 2.4 * L) * scale
    fig = plt.figure(figsize=(fig_w, fig_h))
    main = fig.add_axes([0.0, 0.0, 1.0, 1.0])
    main.set_xlim(0, 1)
    main.set_ylim(-0.15, L + 0.15)
    main.set_axis_off()

    def row(n):
        return (np.arange(n) + 0.5) / n

    node_x = [row(s + m) for s, m in widths]
    for l in range(L + 1):
        s, m = widths[l]
        main.scatter(node_x[l][:s], np.full(s, l), s=60, c="black", zorder=3)
        if m:
            main.scatter(node_x[l][s:], np.full(m, l), s=90, marker="s", facecolors="white",
                         edgecolors="black", zorder=3)
            for xm in node_x[l][s:]:
                main.text(xm, l, "×", ha="center", va="center", fontsize=9, zorder=4)
    for i, name in enumerate(in_vars or []):
        if i < len(node_x[0]):
            main.text(node_x[0][i], -0.1, f"${name}$", ha="center", va="top", fontsize=11)
    for o, name in enumerate(out_vars or []):
        if o < len(node_x[L]):
            main.text(node_x[L][o], L + 0.1, f"${name}$", ha="center", va="bottom", fontsize=11)

    for l, (layer, (xs, phi)) in enumerate(zip(model.layers, curves)):
        n_in, n_out = layer.in_dim, layer.out_dim
        s_next, m_next = widths[l + 1]
        # targets: sum nodes directly; mult sub-nodes on a row just below the next layer
        sub_y = l + 0.82
        tx = np.empty(n_out)
        ty = np.empty(n_out)
        tx[:s_next] = node_x[l + 1][:s_next]
        ty[:s_next] = l + 1
        if m_next:
            for j in range(m_next):
                cx = node_x[l + 1][s_next + j]
                gap = 0.25 / max(s_next + m_next, 1)
                for k, off in enumerate((-gap, gap)):
                    o = s_next + 2 * j + k
                    tx[o], ty[o] = cx + off, sub_y
                    main.plot([cx + off, cx], [sub_y, l + 1], color="black", lw=0.8, zorder=2)
                main.scatter([cx - gap, cx + gap], [sub_y, sub_y], s=12, c="black", zorder=3)
        strength = np.abs(phi).mean(0)                                   # (in, out)
        top = strength.max() if strength.size and strength.max() > 0 else 1.0
        rel = strength / top
        alpha = rel if beta is None else np.tanh(beta * rel) / np.tanh(beta)
        sym = {tuple(int(v) for v in key.split("_")) for key in getattr(layer, "symbolic", {}).keys()}
        n_edges = n_in * n_out
        slot = 1.0 / n_edges
        box_w = min(0.8 * slot, 0.12)
        box_h = min(box_w * fig_w / fig_h, 0.3 / (L + 0.3))          # figure fraction
        half = box_h * (L + 0.3) / 2                                     # in data units
        k = 0
        for o in range(n_out):
            for i in range(n_in):
                a = float(np.clip(alpha[i, o], 0.0, 1.0))
                color = "red" if (i, o) in sym else "black"
                cx = (k + 0.5) * slot
                cy = l + 0.45
                k += 1
                # lines: input node -> inset bottom, inset top -> target
                main.plot([node_x[l][i], cx], [l, cy - half], color=color, alpha=a, lw=0.8, zorder=1)
                main.plot([cx, tx[o]], [cy + half, ty[o]], color=color, alpha=a, lw=0.8, zorder=1)
                # inset in figure coordinates
                fy = (cy + 0.15) / (L + 0.3)             # data y -> figure fraction
                ins = fig.add_axes([cx - box_w / 2, fy - box_h / 2, box_w, box_h])
                ins.plot(xs[:, i], phi[:, i, o], color=color, alpha=max(a, 0.02), lw=1.2)
                ins.set_xticks([])
                ins.set_yticks([])
                for sp_ in ins.spines.values():
                    sp_.set_alpha(max(a, 0.05))
                ins.patch.set_alpha(0.0)
    if title:
        main.set_title(title)
    return _finish(fig, path)

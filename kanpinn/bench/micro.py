"""Speed micro-benchmarks: one PINN closure of a KAN, timed several ways.

For each model (KAN [2,10,1], KAN [4,32,32,1], an MLP 4x50 for context), grid size G,
batch size N and dtype, it times

- ``fwdbwd``:   forward + backward of mean(u²) (a data-fit step);
- ``jet``:      forward with the Laplacian propagated analytically
                (``model.forward_jet(x, 2)``) + backward of mean((Δu - f)²);
- ``autograd``: the same closure with Δu by nested autograd on a plain ``model(x)``
                (``torch.autograd.grad`` once for the gradient, once per dimension);
- ``pykan``: the ``autograd`` closure as pykan 0.2.8's PDE tutorial writes it, on pykan's
  own KAN of the same widths and grid, when pykan is installed (``kanpinn.bench.peers``;
  a note says so when it is not). ``pykan_over_jet`` is the median ratio of interleaved
  pairs (one pykan closure, then five jet closures), not a ratio of two medians;
- ``naive_fwdbwd`` / ``naive_autograd``: the same two closures for a naive per-edge KAN
  written here (a Python loop over edges, each edge evaluating its own full Cox-de Boor
  basis (N, G+k), pykan-style), holding the same parameter values as the kanpinn KAN.
  Before timing, its output and Laplacian are checked against kanpinn's in float64.

Timing: warm-up calls, then the median of repeated calls measured with
``time.perf_counter`` (thread count left as is). Memory is estimated before running by
a probe at a small batch: the bytes autograd saves (counted by ``saved_tensors_hooks``)
scaled linearly to N; combinations estimated above ``mem_limit`` are skipped.
"""
from __future__ import annotations

import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NaiveKAN", "naive_bspline_basis", "run_micro", "scaling", "check_agreement",
           "estimate_bytes", "time_call", "interleaved_ratio", "closure_fwdbwd", "closure_jet", "closure_autograd",
           "MICRO_COLUMNS", "FULL_CONFIG", "QUICK_CONFIG"]

MEM_LIMIT = 4 * 1024 ** 3          # bytes: combinations estimated above this are skipped
TASKS = ("fwdbwd", "jet", "autograd", "naive_fwdbwd", "naive_autograd")

MICRO_COLUMNS = ["model", "G", "N", "dtype", "n_params", "est_mem_mb",
                 "fwdbwd_ms", "jet_ms", "autograd_ms", "naive_fwdbwd_ms", "naive_autograd_ms",
                 "pykan_ms", "autograd_over_jet", "naive_over_kanpinn", "naive_fwdbwd_over_fwdbwd",
                 "pykan_over_jet",
                 "agree_u", "agree_lap", "notes"]

# Which combinations to run. "naive" lists (widths, G, N) where the naive reference runs
# (it is slow: one Python-level Cox-de Boor per edge); None G means "any".
FULL_CONFIG = {
    "models": [("KAN", [2, 10, 1]), ("KAN", [4, 32, 32, 1]), ("MLP", [2, 50, 50, 50, 50, 1])],
    "grids": [5, 20, 100],
    "sizes": [2601, 65536],
    "dtypes": ["float64", "float32"],
    "naive": [([2, 10, 1], None, 2601), ([2, 10, 1], 5, 65536), ([2, 10, 1], 20, 65536),
              ([4, 32, 32, 1], 5, 2601)],
    # (widths, G, N) where pykan's closure is timed too, when pykan is installed
    "pykan": [([2, 10, 1], 5, 2601), ([2, 10, 1], 20, 2601)],
    "warmup": 2, "repeats": 7, "max_seconds": 20.0, "budget_s": None,
}
QUICK_CONFIG = {
    "models": [("KAN", [2, 10, 1]), ("KAN", [4, 32, 32, 1]), ("MLP", [2, 50, 50, 50, 50, 1])],
    "grids": [5, 100],
    "sizes": [2601, 65536],
    "dtypes": ["float64"],
    # (widths, G, N) combinations that quick mode runs; others are left out (not "skipped")
    "only": [([2, 10, 1], 5, 2601), ([2, 10, 1], 100, 2601), ([2, 10, 1], 5, 65536),
             ([4, 32, 32, 1], 5, 2601), ([2, 50, 50, 50, 50, 1], None, 2601)],
    "extra_dtypes": [([2, 10, 1], 5, 2601, "float32")],
    "naive": [([2, 10, 1], 5, 2601)],
    "pykan": [([2, 10, 1], 5, 2601)],
    "warmup": 1, "repeats": 3, "max_seconds": 4.0,
    # total seconds for the micro part: later combinations are left out once spent
    "budget_s": 45.0,
}

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


# --------------------------------------------------------------------------- naive KAN

def naive_bspline_basis(x, knots, k):
    """All G+k B-splines of order k at x by the full Cox-de Boor recursion.

    x: (N,); knots: (G+2k+1,) -> (N, G+k). Order 0 is the indicator of [t_j, t_{j+1}),
    every higher order the usual two-term blend (pykan's B_batch, one edge at a time)."""
    x = x[:, None]
    t = knots[None, :]
    B = ((x >= t[:, :-1]) & (x < t[:, 1:])).to(x.dtype)
    for p in range(1, k + 1):
        left = (x - t[:, :-(p + 1)]) / (t[:, p:-1] - t[:, :-(p + 1)])
        right = (t[:, p + 1:] - x) / (t[:, p + 1:] - t[:, 1:-p])
        B = left * B[:, :-1] + right * B[:, 1:]
    return B


class NaiveKAN(nn.Module):
    """A per-edge reference KAN with the parameter values of a kanpinn ``KAN``.

    φ_io(x_i) = w_b[i,o] SiLU(x_i) + w_s[i,o] Σ_b c[i,b,o] B_b(x_i), y_o = Σ_i φ_io(x_i),
    every edge evaluating its own basis. Only sum nodes (no multiplication nodes, no
    symbolic edges). Inputs must lie inside each layer's grid for the two to agree
    (kanpinn continues the end polynomials outside, the plain recursion drops to zero)."""

    def __init__(self, kan):
        super().__init__()
        if any(m for _, m in kan.widths):
            raise ValueError("NaiveKAN supports sum nodes only")
        self.k = kan.k
        self.coef = nn.ParameterList()
        self.w_base = nn.ParameterList()
        self.w_spline = nn.ParameterList()
        self.knots = []
        self.shapes = []
        for layer in kan.layers:
            if layer.basis.kind != "bspline" or len(layer.symbolic):
                raise ValueError("NaiveKAN supports plain B-spline layers only")
            mask = layer.mask.detach()
            self.coef.append(nn.Parameter(layer.coef.detach().clone()))
            self.w_base.append(nn.Parameter((layer.scale_base * mask).detach().clone()))
            self.w_spline.append(nn.Parameter((layer.scale_sp * mask).detach().clone()))
            self.knots.append(layer.basis.knots.detach().clone())
            self.shapes.append((layer.in_dim, layer.out_dim))

    def forward(self, x):
        for li, (n_in, n_out) in enumerate(self.shapes):
            knots, c = self.knots[li], self.coef[li]
            wb, ws = self.w_base[li], self.w_spline[li]
            outs = [0.0] * n_out
            for i in range(n_in):
                xi = x[:, i]
                for o in range(n_out):
                    B = naive_bspline_basis(xi, knots[i], self.k)            # (N, G+k)
                    phi = wb[i, o] * F.silu(xi) + ws[i, o] * (B @ c[i, :, o])
                    outs[o] = outs[o] + phi
            x = torch.stack(outs, 1)
        return x


# --------------------------------------------------------------------------- closures

def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


def _target(x):
    return torch.sin(x.detach().sum(1, keepdim=True))


def closure_fwdbwd(model, x, f, params):
    u = model(x)
    return torch.autograd.grad((u * u).mean(), params, allow_unused=True)


def closure_jet(model, x, f, params):
    u, du, d2u = model.forward_jet(x, 2)
    loss = ((d2u.sum(-1) - f) ** 2).mean()
    return torch.autograd.grad(loss, params, allow_unused=True)


def autograd_laplacian(u, x):
    """Δu by nested autograd: one gradient, then one more backward per dimension."""
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    lap = 0
    for i in range(x.shape[1]):
        (gi,) = torch.autograd.grad(g[:, i].sum(), x, create_graph=True)
        lap = lap + gi[:, i:i + 1]
    return lap


def closure_autograd(model, x, f, params):
    # the plain forward: kanpinn models called with x requiring grad return jet outputs
    u = getattr(model, "forward_values", model)(x)
    loss = ((autograd_laplacian(u, x) - f) ** 2).mean()
    return torch.autograd.grad(loss, params, allow_unused=True)


_CLOSURES = {"fwdbwd": closure_fwdbwd, "jet": closure_jet, "autograd": closure_autograd,
             "naive_fwdbwd": closure_fwdbwd, "naive_autograd": closure_autograd}


# --------------------------------------------------------------------------- memory

def saved_bytes(fn):
    """Bytes of the distinct storages autograd saves while ``fn()`` runs (a lower bound
    on its peak memory that scales like the real thing)."""
    seen = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except Exception:  # noqa: BLE001 - exotic tensors: ignore in the estimate
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def estimate_bytes(model, task, d, n, dtype, probe=256):
    """Estimated peak bytes of one closure at batch n: saved bytes at a probe batch,
    scaled to n, times 1.5 for temporaries."""
    m = min(n, probe)
    x = (torch.rand(m, d, dtype=dtype) * 1.8 - 0.9).requires_grad_(task.endswith("autograd"))
    f = _target(x)
    params = _params(model)
    b = saved_bytes(lambda: _CLOSURES[task](model, x, f, params))
    return 1.5 * b * n / m


# --------------------------------------------------------------------------- timing

def time_call(fn, warmup=1, repeats=5, max_seconds=10.0, device=None):
    """(median ms, repeats done). Stops repeating once ``max_seconds`` are spent.

    ``device``: a CUDA device is synchronised before each clock read (kernels run
    asynchronously; the host clock alone would time only their launch)."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        def sync():
            torch.cuda.synchronize(dev)
    else:
        def sync():
            return None
    first = None
    for w in range(max(warmup, 1)):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        first = time.perf_counter() - t0
    if first * repeats > max_seconds:
        repeats = max(1, int(max_seconds // max(first, 1e-9)))
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), len(times)


# --------------------------------------------------------------------------- agreement

def check_agreement(kan, naive, x, tol=1e-8):
    """Compare kanpinn and naive outputs (and Laplacians: jet vs nested autograd) at x in
    float64. Returns (max |Δu| / (1 + max|u|), max |ΔΔu| / (1 + max|Δu|)); raises
    AssertionError when the outputs differ by more than ``tol``."""
    x = x.detach().to(torch.float64).requires_grad_(True)
    u_k, _, lap_k = kan.forward_jet(x, 2)
    u_n = naive(x)
    lap_n = autograd_laplacian(u_n, x)
    lap_k = lap_k.sum(-1)
    du = float((u_k - u_n).abs().max().detach() / (1 + u_k.abs().max().detach()))
    dl = float((lap_k - lap_n).abs().max().detach() / (1 + lap_k.abs().max().detach()))
    if not du <= tol:
        raise AssertionError(f"naive reference and kanpinn KAN disagree: relative max |Δu| = {du:.3e} > {tol}")
    if not dl <= 1e3 * tol:
        raise AssertionError(f"naive reference and kanpinn KAN Laplacians disagree: {dl:.3e}")
    return du, dl


# --------------------------------------------------------------------------- building

def _label(kind, widths):
    return f"{kind} [{','.join(str(w) for w in widths)}]"


def build_kan(widths, G, x_fit, k=3, seed=0, margin=0.05):
    """A float64 kanpinn KAN whose every layer has a uniform grid covering its inputs for
    x_fit with a ``margin`` on each side: points from x_fit then lie strictly inside every
    grid, where the naive recursion is the same function as kanpinn's (at a grid end the
    two continue differently, which shows in third derivatives, i.e. in the parameter
    gradients of a Laplacian loss)."""
    from ..kan import KAN
    model = KAN(widths, grid=G, k=k, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        h = x_fit.to(torch.float64)
        for li, layer in enumerate(model.layers):
            lo, hi = h.min(0).values, h.max(0).values
            pad = margin * (hi - lo).clamp_min(1e-3)
            layer.refit(layer.basis.adapted(torch.stack([lo - pad, hi + pad]), 1.0), None)
            h = model._mult(li, layer(h))
    return model


def build_mlp(widths, seed=0):
    from ..mlp import MLP
    return MLP(widths, activation="tanh", seed=seed, dtype=torch.float64)


def _inputs(d, n_max, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_max, d, generator=g, dtype=torch.float64) * 2 - 1


def _selected(config, widths, G, n, dtype):
    only = config.get("only")
    if only is None:
        return dtype in config["dtypes"]
    for w, g, nn_ in only:
        if w == widths and (g is None or g == G) and nn_ == n and dtype in config["dtypes"]:
            return True
    for w, g, nn_, dt in config.get("extra_dtypes", []):
        if w == widths and (g is None or g == G) and nn_ == n and dt == dtype:
            return True
    return False


def _listed(config, key, widths, G, n):
    return any(w == widths and (g is None or g == G) and nn_ == n for w, g, nn_ in config.get(key, []))


def interleaved_ratio(slow, fast, pairs, inner=5):
    """Median over ``pairs`` of t(slow) / median t(fast) of ``inner`` calls made right
    after it. On a noisy machine, where load drifts over seconds, pairs taken side by
    side give a steadier ratio than two medians timed one after the other."""
    ratios = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        slow()
        t_slow = time.perf_counter() - t0
        fast_times = []
        for _ in range(inner):
            t0 = time.perf_counter()
            fast()
            fast_times.append(time.perf_counter() - t0)
        ratios.append(t_slow / max(statistics.median(fast_times), 1e-12))
    return statistics.median(ratios)


def _time_pykan(widths, G, x, f, cfg, row, notes, ours):
    """Time pykan's closure into ``row`` (or say in ``notes`` why not), and its ratio to
    ``ours`` (kanpinn's jet closure) from interleaved pairs."""
    from .peers import PeerUnavailable, pykan_closure
    try:
        fn = pykan_closure(widths, G, x, f)
    except PeerUnavailable as e:
        notes.append(f"pykan: {e}")
        return
    try:
        row["pykan_ms"], reps = time_call(fn, cfg["warmup"], cfg["repeats"], cfg["max_seconds"])
        row["pykan_over_jet"] = interleaved_ratio(fn, ours, reps)
    except RuntimeError as e:
        notes.append(f"pykan: failed ({type(e).__name__}: {str(e)[:80]})")
        return
    if reps < cfg["repeats"]:
        notes.append(f"pykan: {reps} repeat(s)")


def _ratio(a, b):
    if a is None or b is None or not (b > 0) or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _skipped_row(kind, widths, G, n, dt, budget):
    row = {c: None for c in MICRO_COLUMNS}
    row.update(model=_label(kind, widths), G=G, N=n, dtype=dt,
               notes=f"skipped (time budget {budget:.0f} s spent)")
    return row


def run_micro(quick=False, config=None, log=None, mem_limit=MEM_LIMIT):
    """Run the micro-benchmarks; returns a list of row dicts (keys ``MICRO_COLUMNS``).

    ``config`` overrides the size lists (see ``FULL_CONFIG`` / ``QUICK_CONFIG``)."""
    cfg = dict(QUICK_CONFIG if quick else FULL_CONFIG)
    if config:
        cfg.update(config)
    log = log or (lambda *a: None)
    rows = []
    t_begin = time.perf_counter()
    budget = cfg.get("budget_s")
    for kind, widths in cfg["models"]:
        d = widths[0]
        grids = cfg["grids"] if kind == "KAN" else [None]
        for G in grids:
            wanted = [(n, dt) for n in cfg["sizes"] for dt in ("float64", "float32")
                      if _selected(cfg, widths, G, n, dt)]
            if not wanted:
                continue
            if budget is not None and time.perf_counter() - t_begin > budget:
                for n, dt in wanted:
                    rows.append(_skipped_row(kind, widths, G, n, dt, budget))
                log(f"micro {_label(kind, widths)} G={G}: skipped (time budget)")
                continue
            n_max = max(n for n, _ in wanted)
            x_all = _inputs(d, n_max)
            if kind == "KAN":
                base = build_kan(widths, G, x_all)
            else:
                base = build_mlp(widths)
            models = {"float64": base}
            naive64 = None
            for n, dt in wanted:
                t_start = time.perf_counter()
                if budget is not None and t_start - t_begin > budget:
                    rows.append(_skipped_row(kind, widths, G, n, dt, budget))
                    log(f"micro {_label(kind, widths)} G={G} N={n} {dt}: skipped (time budget)")
                    continue
                dtype = _DTYPES[dt]
                if dt not in models:
                    models[dt] = copy.deepcopy(base).to(dtype)
                model = models[dt]
                row = {c: None for c in MICRO_COLUMNS}
                row.update(model=_label(kind, widths), G=G, N=n, dtype=dt,
                           n_params=sum(p.numel() for p in _params(model)))
                notes = []
                x = x_all[:n].to(dtype)
                f = _target(x)
                tasks = ["fwdbwd", "jet", "autograd"]
                naive = None
                if kind == "KAN" and _listed(cfg, "naive", widths, G, n):
                    if naive64 is None:
                        naive64 = NaiveKAN(base)
                        agreement = check_agreement(base, naive64, x_all[: min(n_max, 2601)])
                    row["agree_u"], row["agree_lap"] = agreement
                    if dt == "float64":
                        naive = naive64
                    else:
                        naive = copy.deepcopy(naive64).to(dtype)
                        naive.knots = [t.to(dtype) for t in naive64.knots]
                    tasks += ["naive_fwdbwd", "naive_autograd"]
                est_max = 0.0
                for task in tasks:
                    m = naive if task.startswith("naive") else model
                    try:
                        est = estimate_bytes(m, task, d, n, dtype)
                    except Exception as e:  # noqa: BLE001
                        notes.append(f"{task}: failed ({type(e).__name__}: {e})")
                        continue
                    est_max = max(est_max, est)
                    if est > mem_limit:
                        notes.append(f"{task}: skipped (memory, ~{est / 2**30:.1f} GB)")
                        continue
                    xt = x.clone().requires_grad_(task.endswith("autograd"))
                    params = _params(m)
                    fn = _CLOSURES[task]
                    try:
                        ms, reps = time_call(lambda: fn(m, xt, f, params), cfg["warmup"], cfg["repeats"],
                                             cfg["max_seconds"])
                    except RuntimeError as e:  # out of memory and the like: note it, go on
                        notes.append(f"{task}: failed ({type(e).__name__}: {str(e)[:80]})")
                        continue
                    row[f"{task}_ms"] = ms
                    if reps < cfg["repeats"]:
                        notes.append(f"{task}: {reps} repeat(s)")
                if kind == "KAN" and _listed(cfg, "pykan", widths, G, n) and row["jet_ms"] is not None:
                    params = _params(model)
                    _time_pykan(widths, G, x, f, cfg, row, notes, lambda: closure_jet(model, x, f, params))
                row["est_mem_mb"] = est_max / 2**20
                row["autograd_over_jet"] = _ratio(row["autograd_ms"], row["jet_ms"])
                row["naive_over_kanpinn"] = _ratio(row["naive_autograd_ms"], row["jet_ms"])
                row["naive_fwdbwd_over_fwdbwd"] = _ratio(row["naive_fwdbwd_ms"], row["fwdbwd_ms"])
                row["notes"] = "; ".join(notes)
                rows.append(row)
                log(f"micro {row['model']} G={G} N={n} {dt}: jet {_fmt_ms(row['jet_ms'])}, "
                    f"autograd {_fmt_ms(row['autograd_ms'])}, naive {_fmt_ms(row['naive_autograd_ms'])}, "
                    f"pykan {_fmt_ms(row['pykan_ms'])} "
                    f"({time.perf_counter() - t_start:.1f} s)")
    return rows


def _fmt_ms(v):
    return "-" if v is None else f"{v:.1f} ms"


def scaling(rows):
    """Cost ratios: G 5 -> 100 at fixed (model, N, dtype) and N 2601 -> 65536 at fixed
    (model, G, dtype), for each timed closure. Rows of dicts."""
    out = []
    index = {(r["model"], r["G"], r["N"], r["dtype"]): r for r in rows}
    grids = sorted({r["G"] for r in rows if r["G"] is not None})
    sizes = sorted({r["N"] for r in rows})
    tasks = ("fwdbwd", "jet", "autograd", "naive_autograd")

    def compare(r, r2, vary, fixed, ideal):
        for t in tasks:
            ratio = _ratio(r2[f"{t}_ms"], r[f"{t}_ms"])
            if ratio is not None:
                out.append({"model": r["model"], "vary": vary, "fixed": fixed, "dtype": r["dtype"],
                            "task": t, "ratio": ratio, "ideal": ideal})

    for r in rows:
        model, G, n, dt = r["model"], r["G"], r["N"], r["dtype"]
        if G is not None and grids and G == grids[0]:
            for G2 in grids[1:]:
                r2 = index.get((model, G2, n, dt))
                if r2 is not None:
                    compare(r, r2, f"G {G}->{G2}", f"N={n}", None)
        if sizes and n == sizes[0]:
            for n2 in sizes[1:]:
                r2 = index.get((model, G, n2, dt))
                if r2 is not None:
                    compare(r, r2, f"N {n}->{n2}", f"G={G}", n2 / n)
    return out

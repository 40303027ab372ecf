"""Reference solutions computed from first principles (never from a PINN), for the
problems whose exact solution has no elementary closed form.

- :mod:`.burgers`: viscous Burgers with u0 = -sin(πx) by the Cole-Hopf formula and a
  Gauss-Hermite quadrature (any (x, t), numpy or torch, differentiable by autograd);
- :mod:`.allen_cahn`: Allen-Cahn on a periodic interval by a Fourier pseudo-spectral
  method in space and ETDRK4 in time (Kassam & Trefethen 2005), evaluated anywhere by
  the trigonometric interpolant in x and an integrating-factor Hermite interpolant in t;
- :mod:`.cavity`: the steady lid-driven cavity by finite differences (stream function and
  vorticity), for the problem file's regularised lid, which Ghia et al.'s tables do not
  solve exactly (needs scipy; imported from the module, not here).

These modules hold numerical methods only: no model, no training. They evaluate on
numpy arrays and on torch tensors alike (the latter so that a problem's ``exact`` can be
differentiated by autograd).
"""
from .allen_cahn import AllenCahnSolution, allen_cahn_reference, etdrk4_coefficients, solve_allen_cahn
from .burgers import burgers_cole_hopf, hermite_nodes

__all__ = ["burgers_cole_hopf", "hermite_nodes", "solve_allen_cahn", "allen_cahn_reference",
           "AllenCahnSolution", "etdrk4_coefficients"]

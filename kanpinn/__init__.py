"""kanpinn: physics-informed Kolmogorov-Arnold Networks that solve PDEs and read the
solution back as a closed-form formula.

    import kanpinn as kp
    model = kp.KAN([2, 10, 1], grid=5, k=3)
"""
from .errors import KanpinnError
from .kan import KAN
from .mlp import MLP
from .operators import grad, partial, laplacian, div

__version__ = "0.1.0"

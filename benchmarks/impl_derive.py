"""derive's kernels on a benchmark case: each one a call of the public ``derive.MLP`` API."""
import derive
from derive.kernels import load_network

NAME = "derive"

# Loaded before any peer: this process's OpenMP runtime then starts with its defaults, as in a user's
# process, rather than with a setting a peer's module may make (see impl_torch).
load_network()


class Derive:
    """The compiled derive kernels of one case, by kernel name."""

    name = NAME

    def __init__(self, case, net):
        self.case, self.net = case, net

    @staticmethod
    def network(problem, loss):
        return derive.MLP(list(problem.sizes), activation="tanh", loss=loss)

    def function(self, kernel):
        """A callable of no arguments that computes ``kernel`` and returns a NumPy array."""
        net, c = self.net, self.case
        return {
            "gradient": lambda: net.gradient(c.w, c.X, c.T),
            "hvp": lambda: net.hvp(c.w, c.X, c.T, c.v),
            "hessian": lambda: net.hessian(c.w, c.X, c.T),
            "diagonal": lambda: net.hessian_diagonal(c.w, c.X, c.T, method="exact"),
            "outer": lambda: net.outer_product(c.w, c.X, c.T),
            "jacobian": lambda: net.jacobian(c.w, c.X),
        }[kernel]

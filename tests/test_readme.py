"""README.md: the tour of the Python API runs as printed (so that the README cannot drift from the API)."""
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section):
    """The ```python blocks of README's section ``section`` (a '## ' heading), in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## " + section + "\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def test_the_tour_of_the_python_api_runs_as_printed():
    tour = python_blocks("A tour of the Python API")[0]
    namespace = {}
    exec(compile(tour, str(README) + ": A tour of the Python API", "exec"), namespace)
    net, w, X, T = (namespace[k] for k in ("net", "w", "X", "T"))
    # what the tour's comments promise: shapes, and that H v is H times v
    H = net.hessian(w, X, T)
    assert H.shape == (net.n_params, net.n_params) and net.jacobian(w, X).shape == (32, 3, 4)
    v = np.ones(net.n_params)
    assert np.allclose(net.hvp(w, X, T, v=v), H @ v, rtol=1e-10, atol=1e-12)
    assert [(Wl.shape, bl.shape) for Wl, bl in net.unflatten(w)] == [((8, 4), (8,)), ((3, 8), (3,))]

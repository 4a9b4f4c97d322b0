"""Registry of suggestion algorithms: Katib ``algorithmName`` -> ``"module:Class"``.

Adding an algorithm is one module in this folder plus one line here; the service, settings
validation, the CLI and the conformance suite all read :data:`REGISTRY`. Imports are lazy so
a server only loads the libraries of the algorithms it is asked for.
"""

from __future__ import annotations

from suggestion.algorithms.base import Algorithm, UnknownAlgorithmError
from tunery.registry import load_registered

REGISTRY: dict[str, str] = {
    "random": "suggestion.algorithms.random:RandomSearch",
    "grid": "suggestion.algorithms.grid:GridSearch",
    "sobol": "suggestion.algorithms.sobol:SobolSearch",
    "tpe": "suggestion.algorithms.tpe:Tpe",
    "multivariate-tpe": "suggestion.algorithms.multivariate_tpe:MultivariateTpe",
    "cmaes": "suggestion.algorithms.cma_es:CmaEs",
    "bayesianoptimization": "suggestion.algorithms.bayesian:BayesianOptimization",
    "pbt": "suggestion.algorithms.pbt:Pbt",
    "hyperband": "suggestion.algorithms.hyperband:Hyperband",
    "nsga2": "suggestion.algorithms.nsga2:Nsga2",
    "motpe": "suggestion.algorithms.motpe:Motpe",
    "parego": "suggestion.algorithms.parego:Parego",
}


def get_algorithm(name: str) -> type[Algorithm]:
    """The Algorithm class registered as ``name``.

    Raises:
        UnknownAlgorithmError: no such algorithm; the message lists the valid names.
    """
    cls: type[Algorithm] = load_registered(REGISTRY, name, UnknownAlgorithmError)
    return cls

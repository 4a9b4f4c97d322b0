"""The environment of a local trial: its container's env, what tunery adds, a minimal base.

Called by :mod:`controller.runners.local` for every trial it starts. A trial does not inherit
the controller's environment: the controller may hold credentials (``TUNERY_DB_URL`` with a
database password, cloud keys, tokens) that a trial could print into its log. As a Pod gets
only its container's ``env``, a local trial gets, in this order (later wins):

1. the base: the variables of :data:`BASE_VARIABLES` and :data:`BASE_PREFIXES` the controller
   has, which locate programs, libraries and the locale and carry no credentials;
2. the primary container's ``env`` (plain ``value`` entries);
3. what tunery adds: the trial's names, ``TUNERY_METRICS_FILE`` / ``TUNERY_METRICS_PATH``,
   ``PYTHONUNBUFFERED``, the trial tag of :mod:`controller.runners.proctree`;
4. the GPU confinement (``CUDA_VISIBLE_DEVICES``, ``NVIDIA_VISIBLE_DEVICES``).

Anything else a trial needs goes into the container's ``env`` (``env_per_trial`` of
``tune()``). Pushed metrics go to the ``TUNERY_METRICS_FILE`` the controller tails; a trial
never needs a database URL. docs/local.md lists the same.
"""

from __future__ import annotations

from collections.abc import Mapping

BASE_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        # where Python and native libraries come from (a virtualenv or conda env, CUDA)
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "LD_LIBRARY_PATH",
    }
)
"""Variables passed from the controller's environment to every trial."""

BASE_PREFIXES = ("LC_",)
"""Prefixes of variables passed too (the locale categories)."""


def base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` every trial inherits."""
    return {
        key: value
        for key, value in environ.items()
        if key in BASE_VARIABLES or key.startswith(BASE_PREFIXES)
    }


def trial_environment(
    environ: Mapping[str, str],
    container_env: Mapping[str, str],
    tunery_env: Mapping[str, str],
    devices_env: Mapping[str, str],
) -> dict[str, str]:
    """The whole environment of a trial (see the module docstring for the layers)."""
    env = base_environment(environ)
    env.update(container_env)
    env.update(tunery_env)
    env.update(devices_env)
    return env

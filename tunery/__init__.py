"""tunery: hyperparameter tuning, wire- and YAML-compatible with Kubeflow Katib v1beta1.

The kernel (``space``, ``experiment``, ``trials``, ``store``, ``api``) lives here together with
the public face (``sdk``, ``cli``).
"""

__version__ = "0.1.0"

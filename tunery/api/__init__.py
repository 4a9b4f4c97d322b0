"""Generated gRPC stubs for Katib's api.v1.beta1 (regenerate with ``python proto/generate.py``)."""

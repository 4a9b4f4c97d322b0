"""Suggestion algorithms and the api.v1.beta1.Suggestion gRPC service.

One module per algorithm under ``suggestion.algorithms``, registered there in ``REGISTRY``.
"""

"""Suggestion algorithms (one module each, registered in ``suggestion.algorithms``) and the api.v1.beta1.Suggestion gRPC service."""

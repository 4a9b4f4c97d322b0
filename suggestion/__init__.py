"""Suggestion algorithms and the api.v1.beta1.Suggestion gRPC service.

- ``suggestion.algorithms``: one module per algorithm, registered in ``REGISTRY``; the
  contract and errors are in ``suggestion.algorithms.base``.
- ``suggestion.convert``: Katib protos to kernel types and back.
- ``suggestion.wire``: incremental decoding of successive requests of an experiment.
- ``suggestion.service``: ``SuggestionService`` (in-process API on the protos) and the gRPC
  servicer; ``suggestion.server``: ``create_suggestion_server`` and ``serve``.
"""

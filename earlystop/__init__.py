"""Early stoppers (medianstop) and the api.v1.beta1.EarlyStopping gRPC service."""

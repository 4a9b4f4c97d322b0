"""Reconcile loop, trial runners (local, kubernetes), GPU allocator and operator."""

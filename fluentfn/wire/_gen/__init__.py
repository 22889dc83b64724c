"""Generated gRPC stubs (python -m fluentfn.wire.regen)."""

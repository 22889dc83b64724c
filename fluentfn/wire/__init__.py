"""Wire format: the msgpack codec, error conversion and the generated gRPC stubs."""

"""gRPC transport: the authenticated ActorHost server and pipelined peer streams."""

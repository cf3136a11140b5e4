"""The gRPC service (muselens.v1): servicers, auth, metrics, latest-frame-wins streams, the server."""

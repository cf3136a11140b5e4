"""Generated gRPC/protobuf modules of the muselens API (scripts/gen_protos.py)."""

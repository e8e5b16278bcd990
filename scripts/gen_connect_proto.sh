#!/bin/sh
# Regenerate src/pyngest/protocol/connectpb/connect_pb2.py (and its .pyi) from connect.proto
# with the protobuf compiler of PyPI's grpcio-tools (pip install grpcio-tools). The generated
# module is checked in, so neither the server nor the SDK needs protoc at run time; the version
# of the protobuf runtime it requires is the floor of `protobuf` in pyproject.toml.
set -eu
cd "$(dirname "$0")/../src"
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. pyngest/protocol/connectpb/connect.proto

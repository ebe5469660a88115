"""Compiles interop.proto with grpcio-tools into a temporary directory and imports the generated modules."""
import atexit
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def load():
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="grpcwire-proto-")
    atexit.register(shutil.rmtree, out, True)
    rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(HERE, "interop.proto")])
    if rc != 0:
        raise SystemExit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    import interop_pb2
    import interop_pb2_grpc
    return interop_pb2, interop_pb2_grpc

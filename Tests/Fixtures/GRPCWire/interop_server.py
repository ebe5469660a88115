"""grpcio interop server: grpc.testing.TestService as grpc's interop descriptions specify.

usage: interop_server.py [--tls CERT KEY]
Binds 127.0.0.1 on a free port, prints "PORT <n>" and serves until stdin closes.
"""
import argparse
import sys
import time
from concurrent import futures

import grpc

from interop_common import load

pb, pb_grpc = load()


def echo_metadata(context):
    md = dict(context.invocation_metadata())
    if "x-grpc-test-echo-initial" in md:
        context.send_initial_metadata([("x-grpc-test-echo-initial", md["x-grpc-test-echo-initial"])])
    if "x-grpc-test-echo-trailing-bin" in md:
        context.set_trailing_metadata([("x-grpc-test-echo-trailing-bin", md["x-grpc-test-echo-trailing-bin"])])


def maybe_fail(status, context):
    if status.code != 0:
        code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
        context.abort(code, status.message)


class TestService(pb_grpc.TestServiceServicer):
    def EmptyCall(self, request, context):
        echo_metadata(context)
        return pb.Empty()

    def UnaryCall(self, request, context):
        echo_metadata(context)
        maybe_fail(request.response_status, context)
        return pb.SimpleResponse(payload=pb.Payload(body=b"\x00" * request.response_size))

    def StreamingOutputCall(self, request, context):
        echo_metadata(context)
        maybe_fail(request.response_status, context)
        for p in request.response_parameters:
            if p.interval_us:
                time.sleep(p.interval_us / 1e6)
            yield pb.StreamingOutputCallResponse(payload=pb.Payload(body=b"\x00" * p.size))

    def StreamingInputCall(self, request_iterator, context):
        echo_metadata(context)
        return pb.StreamingInputCallResponse(aggregated_payload_size=sum(len(r.payload.body) for r in request_iterator))

    def FullDuplexCall(self, request_iterator, context):
        echo_metadata(context)
        for request in request_iterator:
            maybe_fail(request.response_status, context)
            for p in request.response_parameters:
                if p.interval_us:
                    time.sleep(p.interval_us / 1e6)
                yield pb.StreamingOutputCallResponse(payload=pb.Payload(body=b"\x00" * p.size))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    opts = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=opts)
    pb_grpc.add_TestServiceServicer_to_server(TestService(), server)
    if args.tls:
        with open(args.tls[0], "rb") as c, open(args.tls[1], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()

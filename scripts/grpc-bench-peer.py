#!/usr/bin/env python3
"""grpcio side of the GRPCWire benchmark (run by `grpcwire-bench`).

  grpc-bench-peer.py server                      serve grpc.testing.TestService (grpc.aio), print "PORT n"
  grpc-bench-peer.py unary PORT SECONDS INFLIGHT print EmptyCall calls/s (grpc.aio client)
  grpc-bench-peer.py stream PORT SIZE COUNT      print MB/s of one server-streaming call
"""
import asyncio
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "GRPCWire"))
import grpc  # noqa: E402

from interop_common import load  # noqa: E402

pb, pb_grpc = load()
OPTS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class Service(pb_grpc.TestServiceServicer):
    async def EmptyCall(self, request, context):
        return pb.Empty()

    async def StreamingOutputCall(self, request, context):
        cache = {}
        for p in request.response_parameters:
            if p.size not in cache:
                cache[p.size] = pb.StreamingOutputCallResponse(payload=pb.Payload(body=b"\x00" * p.size))
            yield cache[p.size]


async def serve():
    server = grpc.aio.server(options=OPTS)
    pb_grpc.add_TestServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await server.wait_for_termination()


async def unary(port, seconds, inflight):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OPTS) as ch:
        stub = pb_grpc.TestServiceStub(ch)
        await stub.EmptyCall(pb.Empty())
        end = time.perf_counter() + seconds
        count = 0

        async def worker():
            nonlocal count
            while time.perf_counter() < end:
                await stub.EmptyCall(pb.Empty())
                count += 1
        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(inflight)])
        print(int(count / (time.perf_counter() - start)))


async def stream(port, size, count):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OPTS) as ch:
        stub = pb_grpc.TestServiceStub(ch)
        req = pb.StreamingOutputCallRequest(response_parameters=[pb.ResponseParameters(size=size)] * count)
        start = time.perf_counter()
        total = 0
        async for r in stub.StreamingOutputCall(req):
            total += len(r.payload.body)
        print(int(total / (time.perf_counter() - start) / 1e6))


def main():
    # SIGTERM (from grpcwire-bench) exits normally so the generated-proto directory is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(serve())
    elif mode == "unary":
        asyncio.run(unary(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
    elif mode == "stream":
        asyncio.run(stream(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))


if __name__ == "__main__":
    main()

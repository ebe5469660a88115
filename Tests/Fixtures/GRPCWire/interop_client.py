"""grpcio interop client: runs grpc's standard interop cases against HOST:PORT.

usage: interop_client.py PORT [--tls CA_PEM SERVER_NAME] [--cases a,b,c]
(--cases may also name bulk_client_streaming, which is not one of grpc's cases.)
Prints one line per case ("PASS name" / "FAIL name: reason") and exits 1 if any failed.
"""
import argparse
import sys
import threading
import time

import grpc

from interop_common import load

pb, pb_grpc = load()

ALL_CASES = [
    "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong", "empty_stream",
    "custom_metadata", "status_code_and_message", "special_status_message", "unimplemented_method",
    "unimplemented_service", "cancel_after_begin", "cancel_after_first_response", "timeout_on_sleeping_server",
    "very_large_request",
]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def payload(n):
    return pb.Payload(body=b"\x00" * n)


def empty_unary(stub, _):
    r = stub.EmptyCall(pb.Empty(), timeout=30)
    check(r == pb.Empty(), "response not empty")


def large_unary(stub, _):
    r = stub.UnaryCall(pb.SimpleRequest(response_size=314159, payload=payload(271828)), timeout=30)
    check(len(r.payload.body) == 314159 and r.payload.body == b"\x00" * 314159, "wrong payload")


def very_large_request(stub, _):
    r = stub.UnaryCall(pb.SimpleRequest(response_size=10, payload=payload(16 << 20)), timeout=60)
    check(len(r.payload.body) == 10, "wrong payload size")


def client_streaming(stub, _):
    sizes = [27182, 8, 1828, 45904]
    r = stub.StreamingInputCall(iter([pb.StreamingInputCallRequest(payload=payload(s)) for s in sizes]), timeout=30)
    check(r.aggregated_payload_size == 74922, f"aggregated {r.aggregated_payload_size}")


def bulk_client_streaming(stub, _):
    """Not a grpc interop case: 24 messages of 1 MiB, for the in-place receive path (InPlaceReceiveTests)."""
    sizes = [1 << 20] * 24
    r = stub.StreamingInputCall(iter([pb.StreamingInputCallRequest(payload=payload(s)) for s in sizes]), timeout=60)
    check(r.aggregated_payload_size == sum(sizes), f"aggregated {r.aggregated_payload_size}")


def server_streaming(stub, _):
    sizes = [31415, 9, 2653, 58979]
    req = pb.StreamingOutputCallRequest(response_parameters=[pb.ResponseParameters(size=s) for s in sizes])
    got = [len(r.payload.body) for r in stub.StreamingOutputCall(req, timeout=30)]
    check(got == sizes, f"sizes {got}")


class Pinger:
    """Feeds requests to a bidi call one at a time."""

    def __init__(self):
        self.cond = threading.Condition()
        self.items = []
        self.done = False

    def put(self, item):
        with self.cond:
            self.items.append(item)
            self.cond.notify()

    def close(self):
        with self.cond:
            self.done = True
            self.cond.notify()

    def __iter__(self):
        while True:
            with self.cond:
                while not self.items and not self.done:
                    self.cond.wait()
                if self.items:
                    item = self.items.pop(0)
                else:
                    return
            yield item


def ping_pong(stub, _):
    pairs = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
    p = Pinger()
    call = stub.FullDuplexCall(iter(p), timeout=30)
    for resp_size, req_size in pairs:
        p.put(pb.StreamingOutputCallRequest(response_parameters=[pb.ResponseParameters(size=resp_size)],
                                            payload=payload(req_size)))
        r = next(call)
        check(len(r.payload.body) == resp_size, f"size {len(r.payload.body)} != {resp_size}")
    p.close()
    check(list(call) == [], "extra responses")
    check(call.code() == grpc.StatusCode.OK, f"status {call.code()}")


def empty_stream(stub, _):
    call = stub.FullDuplexCall(iter([]), timeout=30)
    check(list(call) == [], "responses on empty stream")
    check(call.code() == grpc.StatusCode.OK, f"status {call.code()}")


INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")


def custom_metadata(stub, _):
    r, call = stub.UnaryCall.with_call(pb.SimpleRequest(response_size=314159, payload=payload(271828)),
                                       metadata=[INITIAL, TRAILING], timeout=30)
    check(len(r.payload.body) == 314159, "unary payload")
    check(INITIAL in list(call.initial_metadata()), f"unary initial {call.initial_metadata()}")
    check(TRAILING in list(call.trailing_metadata()), f"unary trailing {call.trailing_metadata()}")
    req = pb.StreamingOutputCallRequest(response_parameters=[pb.ResponseParameters(size=314159)],
                                        payload=payload(271828))
    call = stub.FullDuplexCall(iter([req]), metadata=[INITIAL, TRAILING], timeout=30)
    got = list(call)
    check(len(got) == 1 and len(got[0].payload.body) == 314159, "bidi payload")
    check(INITIAL in list(call.initial_metadata()), f"bidi initial {call.initial_metadata()}")
    check(TRAILING in list(call.trailing_metadata()), f"bidi trailing {call.trailing_metadata()}")


def expect_status(fn, code, message=None):
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code, f"code {e.code()} != {code} ({e.details()!r})")
        if message is not None:
            check(e.details() == message, f"message {e.details()!r} != {message!r}")
        return
    raise AssertionError(f"expected {code}, call succeeded")


def status_with(stub, message):
    status = pb.EchoStatus(code=2, message=message)
    expect_status(lambda: stub.UnaryCall(pb.SimpleRequest(response_status=status), timeout=30),
                  grpc.StatusCode.UNKNOWN, message)

    def bidi():
        call = stub.FullDuplexCall(iter([pb.StreamingOutputCallRequest(response_status=status)]), timeout=30)
        list(call)
    expect_status(bidi, grpc.StatusCode.UNKNOWN, message)


def status_code_and_message(stub, _):
    status_with(stub, "test status message")


def special_status_message(stub, _):
    status_with(stub, "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n")


def unimplemented_method(stub, _):
    expect_status(lambda: stub.UnimplementedCall(pb.Empty(), timeout=30), grpc.StatusCode.UNIMPLEMENTED)


def unimplemented_service(_, channel):
    stub = pb_grpc.UnimplementedServiceStub(channel)
    expect_status(lambda: stub.UnimplementedCall(pb.Empty(), timeout=30), grpc.StatusCode.UNIMPLEMENTED)


def cancel_after_begin(stub, _):
    p = Pinger()
    fut = stub.StreamingInputCall.future(iter(p), timeout=30)
    time.sleep(0.05)
    fut.cancel()
    p.close()
    check(fut.cancelled() or fut.code() == grpc.StatusCode.CANCELLED, "not cancelled")


def cancel_after_first_response(stub, _):
    p = Pinger()
    call = stub.FullDuplexCall(iter(p), timeout=30)
    p.put(pb.StreamingOutputCallRequest(response_parameters=[pb.ResponseParameters(size=31415)],
                                        payload=payload(27182)))
    r = next(call)
    check(len(r.payload.body) == 31415, "first response")
    call.cancel()
    p.close()
    check(call.code() == grpc.StatusCode.CANCELLED, f"status {call.code()}")


def timeout_on_sleeping_server(stub, _):
    p = Pinger()
    call = stub.FullDuplexCall(iter(p), timeout=0.001)
    p.put(pb.StreamingOutputCallRequest(payload=payload(27182)))

    def run():
        list(call)
    try:
        expect_status(run, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        p.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--tls", nargs=2, metavar=("CA", "NAME"))
    ap.add_argument("--cases", default=",".join(ALL_CASES))
    args = ap.parse_args()
    opts = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    target = f"127.0.0.1:{args.port}"
    if args.tls:
        with open(args.tls[0], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        opts.append(("grpc.ssl_target_name_override", args.tls[1]))
        channel = grpc.secure_channel(target, creds, options=opts)
    else:
        channel = grpc.insecure_channel(target, options=opts)
    stub = pb_grpc.TestServiceStub(channel)
    failed = 0
    for name in args.cases.split(","):
        try:
            globals()[name](stub, channel)
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    channel.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

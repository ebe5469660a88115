#!/usr/bin/env python3
"""Kernel paths behind the Flight throughput figures (docs/BENCHMARKS.md, "Fresh pages, and the levers that did
not help"): what this machine's kernel costs for the copies a transfer cannot avoid, measured outside our code.

    kernel_paths.py splice [MiB]
        One loopback TCP stream of MiB (default 2048) from resident memory, 1 MiB per call, sent with send() and
        then with vmsplice() + splice() through a 1 MiB pipe, three rounds each, alternating. Prints GB/s and the
        CPU seconds per GB of the sending and the receiving process (the receiver reads into one reused 4 MiB
        buffer).
    kernel_paths.py fresh [MiB]
        MiB (default 480) copied 1 MiB at a time into a fresh anonymous mapping, as a receiver that keeps what it
        gets does: page by page as written, then with each MiB faulted in first by madvise(MADV_POPULATE_WRITE)
        (what Sources/IOLoop/FreshPages.swift does). Four rounds each, alternating.
    kernel_paths.py tmpfs [MiB]
        MiB (default 458) written 1 MiB per write() into a new file in /dev/shm, as `valkeyflight get -o` does, and
        the same after posix_fallocate() of the whole file. Three rounds each, alternating.

Python 3.11 on Linux (ctypes for vmsplice and madvise); nothing of the project is imported.
"""
import ctypes
import fcntl
import mmap
import os
import resource
import socket
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
MADV_POPULATE_WRITE = 23
SPLICE_F_MORE = 4


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


libc.vmsplice.argtypes = [ctypes.c_int, ctypes.POINTER(IOVec), ctypes.c_ulong, ctypes.c_uint]
libc.vmsplice.restype = ctypes.c_ssize_t
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def address(buffer):
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def splice_round(total, spliced):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        conn = socket.create_connection(listener.getsockname())
        buf = bytearray(4 << 20)
        got, c0 = 0, cpu()
        while got < total:
            n = conn.recv_into(buf)
            if n == 0:
                break
            got += n
        os.write(writer, f"{(cpu() - c0) / (total / 1e9)}".encode())
        os._exit(0)
    sock, _ = listener.accept()
    data = mmap.mmap(-1, total)
    data.write(b"\x07" * total)  # resident before the clock starts
    base = address(data)
    chunk = 1 << 20
    pipe_r, pipe_w = os.pipe()
    fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, chunk)
    view = memoryview(data)
    t0, c0 = time.perf_counter(), cpu()
    offset = 0
    while offset < total:
        if spliced:
            vec = IOVec(base + offset, min(chunk, total - offset))
            moved = libc.vmsplice(pipe_w, ctypes.byref(vec), 1, 0)
            if moved < 0:
                raise OSError(ctypes.get_errno(), "vmsplice")
            left = moved
            while left > 0:
                left -= os.splice(pipe_r, sock.fileno(), left, flags=SPLICE_F_MORE)
            offset += moved
        else:
            offset += sock.send(view[offset:offset + chunk])
    sock.shutdown(socket.SHUT_WR)
    seconds, sender = time.perf_counter() - t0, (cpu() - c0) / (total / 1e9)
    os.waitpid(pid, 0)
    receiver = float(os.read(reader, 64))
    del view
    data.close()
    for fd in (reader, writer, pipe_r, pipe_w):
        os.close(fd)
    sock.close()
    listener.close()
    return total / seconds / 1e9, sender, receiver


def fresh_round(total, populate):
    source = bytearray(b"\x01") * (1 << 20)
    src = address(source)
    dst = mmap.mmap(-1, total)
    base = address(dst)
    chunk = 1 << 20
    t0 = time.perf_counter()
    for offset in range(0, total, chunk):
        if populate:
            libc.madvise(base + offset, chunk, MADV_POPULATE_WRITE)
        ctypes.memmove(base + offset, src, chunk)
    seconds = time.perf_counter() - t0
    dst.close()
    return total / seconds / 1e9


def tmpfs_round(total, preallocate):
    path = f"/dev/shm/kernel-paths-{os.getpid()}.out"
    block = os.urandom(1 << 20)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if preallocate:
            os.posix_fallocate(fd, 0, total)
        for _ in range(total >> 20):
            os.write(fd, block)
    finally:
        os.close(fd)
        seconds = time.perf_counter() - t0
        os.unlink(path)
    return total / seconds / 1e9


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("splice", "fresh", "tmpfs"):
        sys.exit(__doc__)
    what = sys.argv[1]
    if what == "splice":
        total = int(sys.argv[2] if len(sys.argv) > 2 else 2048) << 20
        for _ in range(3):
            for spliced in (False, True):
                rate, sender, receiver = splice_round(total, spliced)
                name = "vmsplice+splice" if spliced else "send"
                print(f"{name:16} {rate:.2f} GB/s  sender {sender:.3f} s/GB  receiver {receiver:.3f} s/GB", flush=True)
    elif what == "fresh":
        total = int(sys.argv[2] if len(sys.argv) > 2 else 480) << 20
        for _ in range(4):
            for populate in (False, True):
                name = "populated first" if populate else "as written"
                print(f"{name:16} {fresh_round(total, populate):.2f} GB/s", flush=True)
    else:
        total = int(sys.argv[2] if len(sys.argv) > 2 else 458) << 20
        for _ in range(3):
            for preallocate in (False, True):
                name = "fallocate first" if preallocate else "write"
                print(f"{name:16} {tmpfs_round(total, preallocate):.2f} GB/s", flush=True)


if __name__ == "__main__":
    main()

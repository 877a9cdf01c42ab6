#!/usr/bin/env python3
"""libnebula-memory.so through Python's ctypes (issue 16): loads the library given as argv[1]
(it used to fail: "cannot allocate memory in static TLS block"), makes a pool, allocates and
frees blocks, and reads the error a double free records, from the main thread and from a
Python thread. Exits 0 and prints "ok" on success."""
import ctypes
import sys
import threading


class PoolOptions(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("block_size", ctypes.c_size_t),
                ("alignment", ctypes.c_size_t), ("block_count", ctypes.c_size_t),
                ("grow", ctypes.c_bool), ("poison", ctypes.c_bool),
                ("budget", ctypes.c_void_p)]


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int)]   # the first field is all this script reads


def load(path):
    lib = ctypes.CDLL(path)
    lib.nebula_pool_create.restype = ctypes.c_void_p
    lib.nebula_pool_create.argtypes = [ctypes.POINTER(PoolOptions)]
    lib.nebula_pool_alloc.restype = ctypes.c_void_p
    lib.nebula_pool_alloc.argtypes = [ctypes.c_void_p]
    lib.nebula_pool_free.restype = ctypes.c_bool
    lib.nebula_pool_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.nebula_pool_destroy.argtypes = [ctypes.c_void_p]
    lib.nebula_last_error.restype = ctypes.POINTER(Error)
    lib.nebula_error_name.restype = ctypes.c_char_p
    lib.nebula_error_name.argtypes = [ctypes.c_int]
    return lib


def use(lib, failures):
    opts = PoolOptions(b"ctypes", 48, 0, 128, True, False, None)
    pool = lib.nebula_pool_create(ctypes.byref(opts))
    if not pool:
        failures.append("nebula_pool_create returned NULL")
        return
    blocks = [lib.nebula_pool_alloc(pool) for _ in range(5000)]
    if not all(blocks) or len(set(blocks)) != len(blocks):
        failures.append("nebula_pool_alloc returned NULL or the same block twice")
    for b in blocks:
        ctypes.memset(b, 0x5A, 48)
    if not all(lib.nebula_pool_free(pool, b) for b in blocks):
        failures.append("nebula_pool_free refused a live block")
    if lib.nebula_pool_free(pool, blocks[0]):
        failures.append("a double free was accepted")
    name = lib.nebula_error_name(lib.nebula_last_error().contents.code)
    if name != b"double free":
        failures.append("the double free recorded %r, not a double free" % name)
    lib.nebula_pool_destroy(pool)


def main():
    try:
        lib = load(sys.argv[1])
    except OSError as e:
        print("FAIL: ctypes.CDLL(%s): %s" % (sys.argv[1], e))
        return 1
    failures = []
    use(lib, failures)
    t = threading.Thread(target=use, args=(lib, failures))
    t.start()
    t.join()
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

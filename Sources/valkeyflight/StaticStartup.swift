// Start-up of the static executable (scripts/build-static).
//
// In a static executable, crtbeginT.o registers the binary's whole `.eh_frame` with libgcc's unwinder
// (`__register_frame_info`). libdispatch ends the main thread of an async `main` with `pthread_exit`, which unwinds
// it, and that first lookup sorts every FDE of the binary: 40–60 ms of CPU at every start, for every CLI command.
// scripts/build-static links with `--wrap` for the registration and its counterpart, so both reach these no-ops;
// the unwinder then finds FDEs through the binary's `.eh_frame_hdr` table (`dl_iterate_phdr`), as it does in a
// dynamic executable. Other builds do not wrap the calls and never reach these functions.

/// Stands in for `__register_frame_info(begin, object)`: registers nothing.
@_cdecl("__wrap___register_frame_info")
public func wrappedRegisterFrameInfo(_ begin: UnsafeRawPointer?, _ object: UnsafeMutableRawPointer?) {}

/// Stands in for `__deregister_frame_info(begin)` at exit: nothing was registered.
@_cdecl("__wrap___deregister_frame_info")
public func wrappedDeregisterFrameInfo(_ begin: UnsafeRawPointer?) -> UnsafeMutableRawPointer? { nil }

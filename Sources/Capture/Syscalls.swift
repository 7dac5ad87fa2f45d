import SprofBase

// The capture layer's file, /proc and clock calls are SprofBase's
// (Sources/Base/POSIX.swift: EINTR retried there and nowhere else, failures as a
// typed errno), shared with the store and the agent; these names keep capture's
// code as it reads.
//
// libbpf and perf-event calls are not there: they live with the BPF code
// (BPFObject.swift, Sampler.swift, Doctor.swift), which turns their negative
// return codes into ``CaptureError`` itself.
typealias Syscalls = POSIX
typealias Errno = POSIX.Errno
typealias FileStatus = POSIX.FileStatus

import SprofBase

// The store's file-system calls are SprofBase's (Sources/Base/POSIX.swift),
// shared with the agent's sinks; these names keep the store's code as it reads.
typealias Syscalls = POSIX
typealias Errno = POSIX.Errno
typealias FileStatus = POSIX.FileStatus

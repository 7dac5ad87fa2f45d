import CSprof
import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// Everything that can go wrong in the capture layer (SprofCapture), each
/// case carrying what the user needs to act: which pid, which file, which
/// errno, which kernel feature. The module's error type: its throwing APIs
/// are `throws(CaptureError)`.
public enum CaptureError: Error, Equatable, Sendable, CustomStringConvertible {
    // MARK: Privileges, targets, options

    /// Neither root nor CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN).
    case missingPrivileges(missing: [String])
    /// The process is gone: it never existed or has exited, or lives in a PID
    /// namespace this one cannot see (`kill(pid, 0)` failed, or
    /// `/proc/PID/maps` is ENOENT/ESRCH).
    case processNotFound(pid: Int32)
    case processNotAccessible(pid: Int32)
    /// Dropping capabilities failed on a thread (Privileges.swift): at
    /// which step, with which errno, on which thread.
    case privilegeDropFailed(step: String, errno: Int32, thread: Int32, threadName: String)
    /// After the drop a thread still shows other capabilities than those kept.
    case privilegesStillHeld(thread: Int32, threadName: String, effective: String, expected: String)
    case invalidFrequency(requested: Int, max: Int)
    case invalidStackSize(requested: Int)
    case invalidOption(String)

    // MARK: BPF and the kernel

    /// The kernel refused the BPF object; `diagnosis` says what it means.
    case verifierRejected(program: String, errno: Int32, logTail: [String], diagnosis: String)
    case bpfFailed(step: String, errno: Int32, hint: String)
    case perfEventFailed(cpu: Int32, errno: Int32, hint: String)
    case commandFailed(command: String, errno: Int32)
    case kernelFeatureMissing(feature: String, needs: String)
    /// `--off-cpu` found no attach point the kernel accepts; each entry is
    /// "attach point: why it was refused".
    case offCPUUnavailable(tried: [String])

    // MARK: Sample records from the BPF program (bpf/include/sprof_abi.h)
    case sampleTooShort(bytes: Int)
    /// The BPF object and this binary were built from different ABI headers.
    case sampleABIMismatch(found: UInt16)
    case sampleBadKind(UInt16)
    case sampleLengthsInconsistent(record: Int, kstack: Int, ustack: Int)

    // MARK: /proc/PID/maps

    /// EACCES/EPERM reading `/proc/PID/maps`: another user's maps need
    /// ptrace read access (`PTRACE_MODE_READ_FSCREDS`, proc(5)).
    case permissionDenied(pid: Int32)
    /// Any other error reading `/proc/PID/maps`.
    case readFailed(pid: Int32, errno: Int32)
    /// A maps line that is not `start-end perms offset major:minor inode [path]`.
    /// `pid` is nil when parsing text that did not come from a process.
    case malformedLine(pid: Int32?, lineNumber: Int, line: String, problem: String)

    // MARK: Writing sprof's files (the raw recording, anything through AtomicFile)

    /// Creating the temporary file in `directory` was refused
    /// (EACCES, EPERM, EROFS).
    case directoryNotWritable(directory: String, errno: Int32)
    /// `directory` does not exist, or a component of it is not a directory.
    case directoryMissing(directory: String)
    /// The destination names an existing directory.
    case destinationIsDirectory(path: String)
    /// The device ran out of space (ENOSPC) or quota (EDQUOT) after
    /// `bytesWritten` bytes reached the temporary file. The destination was
    /// not touched and the temporary file was removed.
    case diskFull(path: String, bytesWritten: UInt64)
    /// Any other failed system call.
    case io(operation: String, path: String, errno: Int32)
    /// The file was already committed, abandoned or failed.
    case closed(path: String)
    /// Writing there is unsafe: a directory on the way is a symlink another
    /// user owns, or one sprof keeps for itself is not its own (SafeWrite.swift).
    case unsafeOutput(SafeWriteError)

    // MARK: Reading a raw recording

    case cannotOpen(path: String, errno: Int32)
    /// The file does not start with the magic bytes "SPROFRAW".
    case notARawFile(path: String)
    /// The file ends inside its fixed header or its metadata record, so
    /// nothing in it can be interpreted.
    case truncatedHeader(path: String, size: Int)
    /// A major format version this build cannot read; `writer` is the sprof
    /// version that wrote it (from the header).
    case unsupportedVersion(path: String, found: RawFormatVersion, writer: String)
    /// The first record is not the metadata record.
    case missingMetadata(path: String)
    /// A record of a known type whose contents contradict its length.
    case malformedRecord(path: String, offset: Int, record: String, detail: String)

    public var description: String {
        switch self {
        case .missingPrivileges(let missing):
            return "sprof needs root, or the capabilities \(missing.joined(separator: " and ")) "
                + "(run it with sudo, or grant them once: sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep \"$(command -v sprof)\")"
        case .privilegeDropFailed(let step, let e, let tid, let name):
            return "could not drop capabilities on thread \(tid)\(name.isEmpty ? "" : " (\(name))"): \(step) failed"
                + (e != 0 ? ": \(errnoText(e))" : "")
                + "; sprof stops rather than run with all of root's powers (--keep-root runs without dropping any)"
        case .privilegesStillHeld(let tid, let name, let effective, let expected):
            return "thread \(tid)\(name.isEmpty ? "" : " (\(name))") still holds \(effective) after the drop to \(expected); "
                + "sprof stops rather than run with more than it needs (--keep-root runs without dropping any)"
        case .processNotFound(let pid):
            return "process \(pid) does not exist or has exited"
        case .processNotAccessible(let pid):
            return "process \(pid) exists but its memory maps cannot be read: run sprof as root or grant CAP_SYS_PTRACE"
        case .invalidFrequency(let f, let max):
            return "-F \(f): the sampling frequency must be between 1 and \(max) Hz (kernel.perf_event_max_sample_rate; raise it with sysctl if you need more)"
        case .invalidStackSize(let n):
            return "--stack-size \(n): must be between 4096 and 65536 bytes and a multiple of 8 (accepts suffixes k/K: 32k)"
        case .invalidOption(let text):
            return text
        case .verifierRejected(let program, let errno, let tail, let diagnosis):
            var s = "the kernel refused BPF program '\(program)' (\(errnoName(errno))): \(diagnosis)"
            if !tail.isEmpty { s += "\nverifier log (last lines):\n  " + tail.joined(separator: "\n  ") }
            return s
        case .bpfFailed(let step, let errno, let hint):
            return "\(step) failed (\(errnoName(errno)))" + (hint.isEmpty ? "" : ": \(hint)")
        case .perfEventFailed(let cpu, let errno, let hint):
            return "cannot open the cpu-clock perf event on CPU \(cpu) (\(errnoName(errno)))" + (hint.isEmpty ? "" : ": \(hint)")
        case .commandFailed(let command, let errno):
            return "cannot start '\(command)' (\(errnoName(errno)))"
        case .sampleTooShort(let n):
            return "sample record of \(n) bytes is shorter than its \(SampleLayout.ustack)-byte header"
        case .sampleABIMismatch(let v):
            return "sample record has ABI version \(v), this sprof speaks \(SPROF_ABI_VERSION): the BPF object and the binary disagree"
        case .sampleBadKind(let k):
            return "sample record has unknown kind \(k)"
        case .sampleLengthsInconsistent(let r, let k, let u):
            return "sample record of \(r) bytes claims \(k) kernel-stack bytes and \(u) user-stack bytes"
        case .offCPUUnavailable(let tried):
            return "off-CPU profiling cannot attach on this kernel; tried:\n  " + tried.joined(separator: "\n  ")
                + "\n(record without --off-cpu, or see `sprof doctor`)"
        case .kernelFeatureMissing(let feature, let needs):
            return "this kernel lacks \(feature): \(needs)"
        case .permissionDenied(let pid):
            return "cannot read /proc/\(pid)/maps (permission denied): profiling another user's process needs root or CAP_SYS_PTRACE"
        case .readFailed(let pid, let e):
            return "cannot read /proc/\(pid)/maps: \(errnoName(e))"
        case .malformedLine(let pid, let n, let line, let problem):
            let source = pid.map { "/proc/\($0)/maps" } ?? "maps text"
            let shown = line.count > 160 ? String(line.prefix(160)) + "..." : line
            return "\(source) line \(n): \(problem): \"\(shown)\""
        case .directoryNotWritable(let dir, let e):
            return "cannot create a file in \(dir): \(errnoText(e)). "
                + "Write the recording somewhere else (-o PATH) or make \(dir) writable."
        case .directoryMissing(let dir):
            return "\(dir) does not exist or is not a directory. Create it first or choose another output path (-o PATH)."
        case .destinationIsDirectory(let path):
            return "\(path) is a directory; give a file name to write to (e.g. \(path.hasSuffix("/") ? path : path + "/")sprof.raw)."
        case .diskFull(let path, let n):
            return "no space left on the device holding \(path) after writing \(n) bytes; "
                + "\(path) was left untouched and the partial temporary file removed. "
                + "Free some space, record for a shorter time, at a lower frequency or with a smaller user stack, "
                + "or write to another file system."
        case .io(let op, let path, let e):
            return "\(op) failed for \(path): \(errnoText(e))"
        case .closed(let path):
            return "\(path) was already committed or abandoned; nothing more can be written to it"
        case .unsafeOutput(let e):
            return e.description
        case .cannotOpen(let path, let e):
            return "cannot open \(path): \(errnoText(e))"
        case .notARawFile(let path):
            return "\(path) is not a sprof raw recording (it does not start with \"SPROFRAW\")"
        case .truncatedHeader(let path, let size):
            return "\(path) is cut short (\(size) bytes): it ends before its header and metadata record are complete, "
                + "so there is nothing to read. The recording was probably killed before it wrote anything."
        case .unsupportedVersion(let path, let v, let writer):
            let who = writer.isEmpty ? "a newer sprof" : "sprof \(writer)"
            return "\(path) is raw format \(v), written by \(who); this sprof reads raw format "
                + "\(RawFormatVersion.current.major).x only. Read it with \(who) or newer."
        case .missingMetadata(let path):
            return "\(path) has no metadata record where the format requires it (right after the header); the file is damaged"
        case .malformedRecord(let path, let off, let rec, let detail):
            return "\(path): \(rec) record at byte \(off) is malformed: \(detail)"
        }
    }
}

/// "EPERM: Operation not permitted" for an errno value.
func errnoName(_ e: Int32) -> String {
    "\(errnoSymbol(e)): \(String(cString: strerror(e)))"
}

/// "Operation not permitted (EPERM)": `strerror(e)` with the symbolic name,
/// so a user can search for it.
func errnoText(_ e: Int32) -> String {
    String(cString: strerror(e)) + " (" + errnoSymbol(e) + ")"
}

/// The <errno.h> name of an errno value ("EPERM"), "errno N" for the rare ones.
func errnoSymbol(_ e: Int32) -> String {
    let names: [(Int32, String)] = [
        (EPERM, "EPERM"), (ENOENT, "ENOENT"), (ESRCH, "ESRCH"), (EINTR, "EINTR"), (EIO, "EIO"), (E2BIG, "E2BIG"),
        (EBADF, "EBADF"), (EAGAIN, "EAGAIN"), (ENOMEM, "ENOMEM"), (EACCES, "EACCES"), (EFAULT, "EFAULT"),
        (EBUSY, "EBUSY"), (EEXIST, "EEXIST"), (EXDEV, "EXDEV"), (ENODEV, "ENODEV"), (ENOTDIR, "ENOTDIR"),
        (EISDIR, "EISDIR"), (EINVAL, "EINVAL"), (EMFILE, "EMFILE"), (ENOSPC, "ENOSPC"), (EROFS, "EROFS"),
        (ENOSYS, "ENOSYS"), (EOPNOTSUPP, "EOPNOTSUPP"), (EDQUOT, "EDQUOT"),
    ]
    return names.first { $0.0 == e }?.1 ?? "errno \(e)"
}

/// Everything that can stop a capture, each with what the user can do about it.
public enum CaptureError: Error, CustomStringConvertible, Equatable {
    /// Neither root nor CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN).
    case missingPrivileges(missing: [String])
    case processNotFound(pid: Int32)
    case processNotAccessible(pid: Int32)
    case invalidFrequency(requested: Int, max: Int)
    case invalidStackSize(requested: Int)
    case invalidOption(String)
    /// The kernel refused the BPF object; `diagnosis` says what it means.
    case verifierRejected(program: String, errno: Int32, logTail: [String], diagnosis: String)
    case bpfFailed(step: String, errno: Int32, hint: String)
    case perfEventFailed(cpu: Int32, errno: Int32, hint: String)
    case commandFailed(command: String, errno: Int32)
    case kernelFeatureMissing(feature: String, needs: String)

    public var description: String {
        switch self {
        case .missingPrivileges(let missing):
            return "sprof needs root, or the capabilities \(missing.joined(separator: " and ")) "
                + "(run it with sudo, or grant them once: sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep \"$(command -v sprof)\")"
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
        case .kernelFeatureMissing(let feature, let needs):
            return "this kernel lacks \(feature): \(needs)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// "EPERM: Operation not permitted" for an errno value.
func errnoName(_ e: Int32) -> String {
    "\(errnoSymbol(e)): \(String(cString: strerror(e)))"
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

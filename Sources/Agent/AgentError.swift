#if canImport(Glibc)
import Glibc
#endif

/// Everything that can go wrong in the agent's own parts; each message says
/// what to do.
public enum AgentError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A listen address that is not loopback, without the flag that allows it.
    case remoteBindRefused(host: String)
    /// A listen address that is not an IPv4 or IPv6 literal.
    case badListenAddress(String)
    /// socket(2), bind(2), listen(2) or getsockname(2) failed.
    case socket(operation: String, address: String, errno: Int32)

    public var description: String {
        switch self {
        case .remoteBindRefused(let host):
            return "refusing to serve on \(host): the agent's page and /metrics show what runs on this host; "
                + "listen on 127.0.0.1 or ::1, or pass --http-allow-remote to expose them on purpose"
        case .badListenAddress(let s):
            return "\(s) is not an IP address to listen on (write 127.0.0.1:PORT or [::1]:PORT)"
        case .socket(let op, let address, let e):
            let hint = e == EADDRINUSE ? ": another process has that port; choose another with --http" : ""
            return "\(op) \(address): \(String(cString: strerror(e)))\(hint)"
        }
    }
}

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
    /// A configuration that does not parse or holds a value out of range:
    /// the file (or "flags"), the line and key when there are ones, what
    /// was expected.
    case config(source: String, line: Int?, key: String?, message: String)
    /// A configuration file that cannot be opened or read.
    case configUnreadable(path: String, errno: Int32)
    /// A query parameter of the agent's page (`since`, `until`, `where`,
    /// `value`) it cannot use; `reason` says what it takes instead.
    case badPageParameter(name: String, reason: String)
    /// A Pyroscope server URL (`--pyroscope`) that is not usable, or
    /// authentication options that contradict each other.
    case pyroscopeBadURL(String, reason: String)
    /// An application name Pyroscope's `/ingest` would refuse.
    case pyroscopeBadAppName(String, reason: String)
    /// A label Pyroscope's `/ingest` would refuse, drop or misread.
    case pyroscopeBadLabel(name: String, reason: String)
    /// The Pyroscope server answered a push with an error status; `message`
    /// is the server's own (its JSON `message` field when it sent one).
    case pyroscopeRejected(url: String, status: Int, message: String)
    /// No answer from the Pyroscope server: refused, timed out, name or TLS failure.
    case pyroscopeUnreachable(url: String, reason: String)
    /// A window given to the Pyroscope pusher after ``PyroscopePusher/close(timeout:)``.
    case pyroscopeClosed

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
        case .config(let source, let line, let key, let message):
            // "/etc/sprof/agent.toml line 3: store.max_age: expected …"
            return source + (line.map { " line \($0)" } ?? "") + (key.map { ": \($0)" } ?? "") + ": " + message
        case .configUnreadable(let path, let e):
            let hint = e == ENOENT ? " (sprof agent --print-config prints a complete one to start from)"
                : e == EACCES ? " (run the agent as root, or make the file readable)" : ""
            return "cannot read the configuration \(path): \(String(cString: strerror(e)))\(hint)"
        case .badPageParameter(let name, let reason):
            return "\(name): \(reason)"
        case .pyroscopeBadURL(let url, let reason):
            return "--pyroscope \(url): \(reason)"
        case .pyroscopeBadAppName(let name, let reason):
            return "Pyroscope application name \"\(name)\": \(reason)"
        case .pyroscopeBadLabel(let name, let reason):
            return "Pyroscope label \"\(name)\": \(reason)"
        case .pyroscopeRejected(let url, let status, let message):
            let hint: String
            switch status {
            case 401, 403: hint = "; check the user:password in the URL, the bearer token, or the tenant (X-Scope-OrgID)"
            case 404, 405: hint = "; is \(url) a Pyroscope server? Behind a proxy, include its path prefix in the URL"
            case 413: hint = "; the profile is larger than the server's size limit for this tenant"
            case 429: hint = "; the server's ingestion rate limit for this tenant"
            case 300..<400: hint = "; redirects are not followed (they would carry the credentials elsewhere): give the final URL"
            default: hint = ""
            }
            return "Pyroscope \(url) refused a profile: HTTP \(status) \(message)\(hint)"
        case .pyroscopeUnreachable(let url, let reason):
            return "Pyroscope \(url): \(reason)"
        case .pyroscopeClosed:
            return "the Pyroscope pusher is closed"
        }
    }
}

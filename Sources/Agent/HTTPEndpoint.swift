import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The agent's local HTTP endpoint: `/healthz`, `/metrics` and its page.
/// A small HTTP/1.1 server (RFC 9112) of its own rather than a framework:
/// it answers a few GET requests from a browser or a scraper on loopback,
/// one connection at a time, each closed after its response
/// (`Connection: close`), so it needs no event loop and costs a blocked
/// thread.
///
/// It listens on loopback unless told otherwise: anything else
/// (`0.0.0.0`, a public address) is refused unless `allowRemote` is set,
/// because the page shows what runs on the host.
public final class HTTPEndpoint: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String
        /// The path without the query, percent-decoded.
        public var path: String
        /// Query parameters, percent-decoded (`+` is a space, as forms send it).
        public var query: [String: String]
    }

    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: [UInt8]
        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
        public init(status: Int, contentType: String = "text/plain; charset=utf-8", text: String) {
            self.init(status: status, contentType: contentType, body: Array(text.utf8))
        }
    }

    public typealias Handler = @Sendable (Request) -> Response

    /// The port it listens on (the one the kernel chose when asked for 0).
    public let port: UInt16
    /// What it listens on, as `127.0.0.1:PORT` or `[::1]:PORT`.
    public let address: String
    private let fd: Int32
    private let handler: Handler
    private let stopped = Atomic<Bool>(false)
    private let done = Mutex<Bool>(false)

    /// Binds and listens; ``start()`` serves.
    /// - Parameters:
    ///   - host: an IPv4 or IPv6 literal.
    ///   - port: 0 for any free port.
    public init(host: String = "127.0.0.1", port: UInt16, allowRemote: Bool = false,
                handler: @escaping Handler) throws(AgentError) {
        var v4 = in_addr()
        var v6 = in6_addr()
        let isV4 = inet_pton(AF_INET, host, &v4) == 1
        let isV6 = !isV4 && inet_pton(AF_INET6, host, &v6) == 1
        guard isV4 || isV6 else { throw .badListenAddress(host) }
        // 127.0.0.0/8 (RFC 1122 §3.2.1.3) or ::1 (RFC 4291 §2.5.3).
        let loopback = isV4 ? (UInt32(bigEndian: v4.s_addr) >> 24) == 127
            : withUnsafeBytes(of: v6) { b in b.prefix(15).allSatisfy { $0 == 0 } && b[15] == 1 }
        guard loopback || allowRemote else { throw .remoteBindRefused(host: host) }
        let shown = isV6 ? "[\(host)]:\(port)" : "\(host):\(port)"

        let fd = socket(isV4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socket(operation: "socket", address: shown, errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var result: Int32
        if isV4 {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr = v4
            result = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        } else {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            sa.sin6_addr = v6
            result = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        }
        guard result == 0 else { let e = errno; close(fd); throw .socket(operation: "bind", address: shown, errno: e) }
        guard listen(fd, 16) == 0 else { let e = errno; close(fd); throw .socket(operation: "listen", address: shown, errno: e) }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard withUnsafeMutablePointer(to: &storage, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getsockname(fd, $0, &length) } }) == 0 else {
            let e = errno; close(fd); throw .socket(operation: "getsockname", address: shown, errno: e)
        }
        // sin_port and sin6_port sit at the same offset (2) in both structures.
        let actual = withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) }
        self.fd = fd
        self.port = actual
        self.address = isV6 ? "[\(host)]:\(actual)" : "\(host):\(actual)"
        self.handler = handler
    }

    deinit { stop() }

    /// Serves on a thread of its own until ``stop()``.
    public func start() {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { arg in
            let me = Unmanaged<HTTPEndpoint>.fromOpaque(arg!).takeRetainedValue()
            me.serve()
            return nil
        }, box.toOpaque())
        pthread_detach(thread)
    }

    /// Stops listening; a request being answered is finished.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        // shutdown(2) wakes the accept(2) the serving thread is blocked in.
        shutdown(fd, Int32(SHUT_RDWR))
        done.withLock { closed in
            if !closed { close(fd); closed = true }
        }
    }

    private func serve() {
        while !stopped.load(ordering: .relaxed) {
            // accept4(2) is GNU-only and not in Glibc's Swift overlay:
            // accept, then FD_CLOEXEC (no exec happens in between here).
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            answer(client)
            close(client)
        }
    }

    /// Reads one request (head only: GET and HEAD have no body) and writes
    /// the response. A client that sends nothing for 2 s, or more than 16 KiB
    /// of head, is answered 408 / 431 and closed.
    private func answer(_ client: Int32) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let end: [UInt8] = [13, 10, 13, 10]
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                if n < 0 { send(client, Response(status: 408, text: "request timeout\n")) }
                return
            }
            head += buffer[0..<n]
            if head.count >= 4, (0...(head.count - 4)).contains(where: { head[$0..<($0 + 4)].elementsEqual(end) }) { break }
            if head.count > 16 << 10 { send(client, Response(status: 431, text: "request header too large\n")); return }
        }
        guard let line = String(decoding: head, as: UTF8.self).split(separator: "\r\n", maxSplits: 1).first else {
            send(client, Response(status: 400, text: "bad request\n"))
            return
        }
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            send(client, Response(status: 400, text: "bad request line\n"))
            return
        }
        let method = String(parts[0])
        guard method == "GET" || method == "HEAD" else {
            send(client, Response(status: 405, text: "only GET and HEAD\n"), extra: "Allow: GET, HEAD\r\n")
            return
        }
        let target = Self.originForm(parts[1])
        let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard let path = Self.safePath(pathPart[0]) else {
            send(client, Response(status: 400, text: "bad request target\n"))
            return
        }
        var query: [String: String] = [:]
        if pathPart.count == 2 {
            for pair in pathPart[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query[Self.percentDecode(kv[0])] = kv.count == 2 ? Self.percentDecode(kv[1]) : ""
            }
        }
        let request = Request(method: method, path: path, query: query)
        // HEAD: the head GET would send, Content-Length included, and no body (RFC 9110 §9.3.2).
        send(client, handler(request), headOnly: method == "HEAD")
    }

    private func send(_ client: Int32, _ r: Response, extra: String = "", headOnly: Bool = false) {
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
                      431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"][r.status] ?? "Status"
        let head = "HTTP/1.1 \(r.status) \(reason)\r\nContent-Type: \(r.contentType)\r\nContent-Length: \(r.body.count)\r\n"
            + "Cache-Control: no-store\r\nConnection: close\r\n\(extra)\r\n"
        for part in headOnly ? [Array(head.utf8)] : [Array(head.utf8), r.body] {
            var sent = 0
            while sent < part.count {
                let n = part.withUnsafeBytes { Glibc.send(client, $0.baseAddress! + sent, part.count - sent, Int32(MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                sent += n
            }
        }
    }

    /// The request target in origin form (RFC 9112 §3.2.1, `/path?query`):
    /// an absolute-form target (`http://host/path?query`, §3.2.2, which a
    /// server "MUST accept") loses its scheme and authority; anything else is
    /// returned as it is, for ``safePath(_:)`` to refuse.
    static func originForm(_ target: Substring) -> Substring {
        let lower = target.prefix(8).lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else { return target }
        let rest = target.dropFirst(lower.hasPrefix("http://") ? 7 : 8)
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return rest[slash] == "/" ? rest[slash...] : "/" + rest[slash...]
    }

    /// The percent-decoded path, or nil when the endpoint refuses it (400):
    /// not starting with `/`, or, once decoded (so `%2e%2e` and `..%2f` are
    /// caught too), holding a `.` or `..` segment, an empty segment (`//`),
    /// a backslash, NUL or another control character. The handlers match
    /// whole paths against the few they generate and never hand one to the
    /// file system; this keeps a path that looks like one from reaching
    /// them at all.
    static func safePath(_ raw: Substring) -> String? {
        guard raw.hasPrefix("/") else { return nil }
        let path = percentDecode(raw, plusIsSpace: false)
        if path == "/" { return path }
        for segment in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            if segment.isEmpty || segment.elementsEqual(".".utf8) || segment.elementsEqual("..".utf8) { return nil }
            if segment.contains(where: { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "\\") }) { return nil }
        }
        return path
    }

    /// RFC 3986 §2.1 percent-decoding; malformed escapes are kept as they are.
    static func percentDecode(_ s: Substring, plusIsSpace: Bool = true) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 65...70: return c - 55
            case 97...102: return c - 87
            default: return nil
            }
        }
        while i < b.count {
            if b[i] == 37, i + 2 < b.count, let h = hex(b[i + 1]), let l = hex(b[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(plusIsSpace && b[i] == 43 ? 32 : b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

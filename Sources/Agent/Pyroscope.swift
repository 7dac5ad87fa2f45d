import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// Pushing the agent's windows to a Grafana Pyroscope server through its
// legacy HTTP ingest API, `POST /ingest`, the one every Pyroscope client
// library speaks. What the server does with each part of a request was read
// from its source, not guessed:
//
// - grafana/pyroscope pkg/ingester/pyroscope/ingest_handler.go: the query
//   parameters (`name` parsed as a label set; `from`/`until` by attime.Parse;
//   `sampleRate`, default 100; `spyName`, default "unknown"; `units` and
//   `aggregationType` only matter to the non-pprof formats), and the body: a
//   `multipart/form-data` Content-Type selects the pprof form, while
//   `format=pprof` means a BARE pprof body and is checked first, so a
//   multipart body must NOT carry `format=pprof`. Status codes: 400 the
//   metadata (`name`) did not parse, 408 the body could not be read, 413 too
//   large, 422 the profile or its labels were refused (invalid pprof, too
//   many labels, a value too long), 429 the tenant's rate limit; errors are
//   JSON `{"code": …, "message": …}` (pkg/util/http/error.go). 401 comes from
//   the auth middleware (multi-tenant mode without `X-Scope-OrgID`,
//   pkg/util/http/auth.go). The same handler is also routed at
//   `/pyroscope/ingest` (pkg/api/api.go).
// - grafana/pyroscope pkg/og/convert/pprof/profile.go: the form part named
//   `profile` is the pprof, gzipped or not (pkg/pprof/pprof.go detects gzip);
//   it is read from the form's FILES (pkg/og/util/form/form.go), so the part
//   needs a `filename`; `sample_type_config` (JSON) is optional, and a
//   `prev_profile` part is refused. The series gets `__name__` from the
//   sample types (`wall` if one is named so, else `process_cpu` for one
//   containing "cpu" — "samples" counts, by the default display-name table
//   in pkg/og/storage/tree/pprof.go), `__delta__=false`, `pyroscope_spy` =
//   spyName, and `service_name` = the application name unless a label of
//   that name was given; labels starting with `__` are dropped. The
//   profile's own time_nanos is the sample time; `from` replaces it only
//   when it is zero.
// - grafana/pyroscope api/model/labelset/labelset.go and validate.go: the
//   `name` grammar `APP{key=value,key=value}` with NO escaping: a value ends
//   at `,` or `}`, keys and values are trimmed of white space; the
//   application name is `[A-Za-z0-9_./-]+`; a label name `[A-Za-z0-9_.]+`,
//   with `__name__` reserved (given as a label it would silently replace the
//   application name). pkg/validation/validate.go then refuses a label name
//   starting with a digit and turns dots into underscores; the limits
//   (pkg/validation/limits.go defaults) are 30 label names per series, names
//   of 1024 bytes and values of 2048.
// - pkg/og/util/attime/attime.go: `from`/`until` are Unix time in seconds
//   (10 digits), or milli-, micro- or nanoseconds told apart by 13, 16 or 19
//   digits. The Java client sends seconds, the Go client nanoseconds.
// - The API documentation (grafana.com/docs/pyroscope/latest/configure-server/about-server-api):
//   `name`, `from`, `until` required; `format` defaults to folded;
//   `sampleRate` to 100; multi-tenant servers need `X-Scope-OrgID`;
//   Pyroscope has no authentication of its own (a proxy in front does it).
// - The clients, for what a well-behaved pusher does:
//   grafana/pyroscope-go upstream/remote/remote.go (multipart part
//   `profile`, filename `profile.pprof`; Basic auth from a user and
//   password, else `Authorization: Bearer TOKEN`; `X-Scope-OrgID` for the
//   tenant; extra headers last; redirects NOT followed, since they would
//   drop or leak the Authorization header; anything but 200 is a failure)
//   and grafana/pyroscope-java agent/src/main/java/io/pyroscope/javaagent/impl/PyroscopeExporter.java
//   (Basic auth also from the URL's user:password; retries on 429 and 5xx
//   and on I/O errors with exponential backoff from 1 s to 30 s, up to a
//   bounded number of tries; other 4xx are not retried).

/// One `POST /ingest` request to a Pyroscope server, built without I/O:
/// method, URL with its query, headers and the multipart body.
///
/// The request is what grafana/pyroscope-go's uploader sends (see the notes
/// at the top of this file):
///
///     POST {URL path}/ingest?name=APP{k=v,…}&from=S&until=S&spyName=ebpfspy&sampleRate=HZ
///     Content-Type: multipart/form-data; boundary=B
///
///     --B
///     Content-Disposition: form-data; name="profile"; filename="profile.pprof"
///     Content-Type: application/octet-stream
///
///     <gzipped pprof>
///     --B--
///
/// `from` and `until` are whole Unix seconds (rounded down), the form the
/// API documentation gives; the profile's own `time_nanos` carries the
/// precise start. Query values are percent-encoded except RFC 3986's
/// unreserved characters (Go's `url.ParseQuery` decodes them).
public struct PyroscopeRequest: Sendable, Equatable {
    /// The spy name sent when none is given: Pyroscope's own name for its
    /// eBPF profiler (pkg/og/agent/spy/spy.go), which its UI knows; the
    /// server treats it like any other (only pyspy, rbspy, scripting and
    /// dotnetspy make it rewrite the profile, pkg/og/convert/pprof/profile.go).
    public static let defaultSpyName = "ebpfspy"
    /// The form part the server reads the pprof from, and its file name.
    public static let profilePart = "profile"
    public static let profileFileName = "profile.pprof"
    /// labelset validation: 30 label names per series by default, of which
    /// the server adds `__name__`, `__delta__`, `pyroscope_spy` and (unless
    /// given) `service_name`.
    public static let maxLabels = 26
    /// Label value (and application name) length limit, bytes (the server's default).
    public static let maxValueBytes = 2048

    public let method: String
    public let url: URL
    /// Header names as sent; Content-Length is left to the HTTP client.
    public let headers: [String: String]
    public let body: [UInt8]
    /// The multipart boundary (also in the Content-Type header).
    public let boundary: String
    /// The `name` query parameter, before percent-encoding: `APP{k=v,…}`.
    public let name: String

    /// - Parameters:
    ///   - server: where to send, and the credentials.
    ///   - appName: Pyroscope's application (service) name, `[A-Za-z0-9_./-]+`.
    ///   - labels: the series' labels; see ``labelSet(appName:labels:)`` for
    ///     what is refused and what is rewritten.
    ///   - from, until: the window.
    ///   - sampleRate: the sampling frequency, Hz (> 0).
    ///   - pprof: the profile as `Pprof.encode` gives it (gzipped profile.proto).
    public init(server: PyroscopeServer, appName: String, labels: [String: String], from: Date, until: Date,
                sampleRate: Int, spyName: String = PyroscopeRequest.defaultSpyName, pprof: [UInt8]) throws(AgentError) {
        var boundary = Self.randomBoundary()
        // A boundary must not occur in the part (RFC 2046 5.1.1); 128 random
        // bits make that a formality, but it costs one scan to be sure.
        while Self.contains(pprof, Array(("--" + boundary).utf8)) { boundary = Self.randomBoundary() }
        try self.init(server: server, appName: appName, labels: labels, from: from, until: until,
                      sampleRate: sampleRate, spyName: spyName, pprof: pprof, boundary: boundary)
    }

    /// The same with a chosen boundary (tests: deterministic bodies).
    init(server: PyroscopeServer, appName: String, labels: [String: String], from: Date, until: Date,
         sampleRate: Int, spyName: String, pprof: [UInt8], boundary: String) throws(AgentError) {
        precondition(sampleRate > 0, "sample rate \(sampleRate) Hz")
        precondition(!Self.contains(pprof, Array(("--" + boundary).utf8)), "the boundary occurs in the profile")
        name = try Self.labelSet(appName: appName, labels: labels)
        self.boundary = boundary
        method = "POST"
        var items = server.queryItems.filter { !["name", "from", "until", "spyName", "sampleRate", "format"].contains($0.name) }
        items += [("name", name), ("from", String(Self.unixSeconds(from))), ("until", String(Self.unixSeconds(until))),
                  ("spyName", spyName), ("sampleRate", String(sampleRate))]
        var c = server.base
        c.percentEncodedQuery = items.map { Self.encode($0.name) + "=" + Self.encode($0.value) }.joined(separator: "&")
        guard let url = c.url else { throw .pyroscopeBadURL(server.displayURL, reason: "cannot build a request URL") }
        self.url = url
        var h = ["Content-Type": "multipart/form-data; boundary=\(boundary)", "User-Agent": "sprof"]
        if let a = server.authorization { h["Authorization"] = a }
        if let t = server.tenantID { h["X-Scope-OrgID"] = t }
        for (k, v) in server.headers { h[k] = v }
        headers = h
        var b: [UInt8] = []
        b.reserveCapacity(pprof.count + 256)
        b += Array("--\(boundary)\r\n".utf8)
        b += Array("Content-Disposition: form-data; name=\"\(Self.profilePart)\"; filename=\"\(Self.profileFileName)\"\r\n".utf8)
        b += Array("Content-Type: application/octet-stream\r\n\r\n".utf8)
        b += pprof
        b += Array("\r\n--\(boundary)--\r\n".utf8)
        body = b
    }

    /// The `name` parameter: `APP{k1=v1,k2=v2}`, keys sorted.
    ///
    /// The grammar has no escapes (api/model/labelset/labelset.go), so:
    /// - a label name must be `[A-Za-z_][A-Za-z0-9_.]*` and must not start
    ///   with `__` (`__name__` would replace the application name, others are
    ///   dropped by the server): refused with ``AgentError/pyroscopeBadLabel(name:reason:)``;
    /// - in a value, `,` and `}` (which would end it) become `_`; white space
    ///   around it is trimmed (the server trims it anyway);
    /// - a label whose value is empty is left out (an empty label is no label,
    ///   as in Prometheus and in pyroscope-go's labelset);
    /// - more than ``maxLabels`` labels, or a value over ``maxValueBytes``,
    ///   is refused: the server would refuse the whole profile (422).
    public static func labelSet(appName: String, labels: [String: String]) throws(AgentError) -> String {
        let app = appName.trimmingCharacters(in: .whitespaces)
        guard !app.isEmpty else { throw .pyroscopeBadAppName(appName, reason: "empty") }
        if let bad = app.unicodeScalars.first(where: { !isAppNameScalar($0) }) {
            throw .pyroscopeBadAppName(appName, reason: "\"\(bad)\" is not allowed; use letters, digits and _ . / -")
        }
        guard app.utf8.count <= maxValueBytes else {
            throw .pyroscopeBadAppName(appName, reason: "longer than the server's \(maxValueBytes) bytes")
        }
        var pairs: [(String, String)] = []
        for (key, raw) in labels {
            try validateLabelName(key)
            var value = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if value.contains(",") || value.contains("}") {
                value = String(value.map { $0 == "," || $0 == "}" ? "_" : $0 })
            }
            guard !value.isEmpty else { continue }
            guard value.utf8.count <= maxValueBytes else {
                throw .pyroscopeBadLabel(name: key, reason: "the value is \(value.utf8.count) bytes; the server takes at most \(maxValueBytes)")
            }
            pairs.append((key, value))
        }
        guard pairs.count <= maxLabels else {
            throw .pyroscopeBadLabel(name: pairs.map(\.0).sorted().joined(separator: ","),
                                     reason: "\(pairs.count) labels; the server takes \(maxLabels) besides its own four")
        }
        pairs.sort { $0.0 < $1.0 }
        return app + "{" + pairs.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }

    /// Refuses a label name the server would refuse or drop.
    public static func validateLabelName(_ key: String) throws(AgentError) {
        guard let first = key.unicodeScalars.first else { throw .pyroscopeBadLabel(name: key, reason: "empty name") }
        if let bad = key.unicodeScalars.first(where: { !isLabelNameScalar($0) }) {
            throw .pyroscopeBadLabel(name: key, reason: "\"\(bad)\" is not allowed in a name; use letters, digits, _ and .")
        }
        if ("0"..."9").contains(first) { throw .pyroscopeBadLabel(name: key, reason: "a name must not start with a digit") }
        if key.hasPrefix("__") {
            throw .pyroscopeBadLabel(name: key, reason: "names starting with __ are the server's own (__name__ is the application name)")
        }
        guard key.utf8.count <= 1024 else { throw .pyroscopeBadLabel(name: key, reason: "longer than the server's 1024 bytes") }
    }

    static func isLabelNameScalar(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s) || s == "_" || s == "."
    }

    static func isAppNameScalar(_ s: Unicode.Scalar) -> Bool { isLabelNameScalar(s) || s == "-" || s == "/" }

    /// Whole seconds, rounded down (as Java's `Instant.getEpochSecond`).
    static func unixSeconds(_ d: Date) -> Int64 { Int64(d.timeIntervalSince1970.rounded(.down)) }

    /// RFC 3986 section 2.3: only unreserved characters go unencoded.
    static func encode(_ s: String) -> String {
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    /// 32 hex digits after a prefix: well inside RFC 2046's 70 characters,
    /// and only characters that need no quoting in the header.
    static func randomBoundary() -> String {
        var g = SystemRandomNumberGenerator()
        let hex = (0..<2).map { _ -> String in
            let s = String(g.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
        return "sprof-" + hex
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var i = 0
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first && haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}

/// A Pyroscope server as `--pyroscope URL` names it, with the credentials
/// the clients support: `http[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX]`.
///
/// - `USER:PASSWORD` in the URL becomes HTTP Basic authentication (as
///   pyroscope-java does; Grafana Cloud: the instance id and an access
///   token); `bearerToken` sends `Authorization: Bearer TOKEN` instead
///   (pyroscope-go's deprecated AuthToken, or a header of one's own). Both
///   at once is refused rather than one silently ignored.
/// - `tenantID` is sent as `X-Scope-OrgID`, which a multi-tenant server
///   requires (without an authenticating proxy that sets it).
/// - `headers` are added last and win, as pyroscope-go's HTTPHeaders.
/// - `/PREFIX` is kept: requests go to `/PREFIX/ingest` (a proxy's path).
///   Query parameters in the URL are kept too, except the ones the request sets.
/// - No port means the scheme's (80, 443); Pyroscope itself listens on 4040.
public struct PyroscopeServer: Sendable, Equatable {
    /// The URL without user and password (for messages: never shows a password).
    public let displayURL: String
    /// The `Authorization` header value, if any.
    public let authorization: String?
    public let tenantID: String?
    public let headers: [String: String]
    /// Scheme, host, port and `/PREFIX/ingest`; no user, no query.
    let base: URLComponents
    let queryItems: [(name: String, value: String)]

    public init(url: String, bearerToken: String? = nil, tenantID: String? = nil,
                headers: [String: String] = [:]) throws(AgentError) {
        guard var c = URLComponents(string: url) else { throw .pyroscopeBadURL(url, reason: "not a URL") }
        guard let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw .pyroscopeBadURL(url, reason: "the scheme must be http or https, not \(c.scheme ?? "missing")")
        }
        guard let host = c.host, !host.isEmpty else { throw .pyroscopeBadURL(url, reason: "no host") }
        // URLComponents' user and password come percent-decoded.
        let user = c.user ?? "", password = c.password ?? ""
        c.user = nil
        c.password = nil
        let display = { (c: URLComponents) -> String in var d = c; d.query = nil; return d.string ?? host }
        if user.isEmpty != password.isEmpty {
            throw .pyroscopeBadURL(display(c), reason: "give both a user and a password (USER:PASSWORD@HOST) for Basic authentication, or neither")
        }
        let token = bearerToken?.trimmingCharacters(in: .whitespaces) ?? ""
        if !user.isEmpty && !token.isEmpty {
            throw .pyroscopeBadURL(display(c), reason: "both USER:PASSWORD in the URL and a bearer token: give one")
        }
        if !user.isEmpty {
            authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        } else if !token.isEmpty {
            authorization = "Bearer " + token
        } else {
            authorization = nil
        }
        if let t = tenantID, t.isEmpty || t.contains(where: { $0.isNewline }) {
            throw .pyroscopeBadURL(display(c), reason: "the tenant id must be one non-empty line")
        }
        self.tenantID = tenantID
        for (k, v) in headers where k.isEmpty || k.contains(where: { $0 == ":" || $0.isWhitespace }) || v.contains(where: { $0.isNewline }) {
            throw .pyroscopeBadURL(display(c), reason: "header \"\(k)\" is not a header name and one-line value")
        }
        self.headers = headers
        queryItems = (c.queryItems ?? []).map { ($0.name, $0.value ?? "") }
        c.query = nil
        c.fragment = nil
        displayURL = display(c)
        // As path.Join(u.Path, "ingest") in pyroscope-go.
        var path = c.path
        while path.hasSuffix("/") { path.removeLast() }
        c.path = path + "/ingest"
        base = c
    }

    public static func == (a: PyroscopeServer, b: PyroscopeServer) -> Bool {
        a.displayURL == b.displayURL && a.authorization == b.authorization && a.tenantID == b.tenantID
            && a.headers == b.headers && a.base == b.base && a.queryItems.elementsEqual(b.queryItems, by: ==)
    }
}

/// Pushes the agent's windows to Pyroscope without ever holding up the
/// caller (the agent's window thread).
///
/// ``enqueue(pprof:from:until:labels:)`` builds the request (validation and
/// one copy of the bytes, no I/O) and appends it to an in-memory queue; one
/// background thread sends, oldest first:
/// - each request has ``Configuration/requestTimeout`` for the whole exchange;
/// - a failure worth retrying (no connection, timeout, HTTP 408, 429, 5xx)
///   is retried after a backoff, ``Configuration/backoffBase`` doubling to
///   ``Configuration/backoffCap`` with "equal jitter" (a uniform delay in
///   [d/2, d], so agents that lost the same server do not return in step),
///   up to ``Configuration/maxAttempts`` tries per window; the backoff
///   follows the server (consecutive failures), not the window, so a
///   server that stays down is asked about once per backoff, not once per
///   window;
/// - any other answer (400, 401, 404, 413, 422, a redirect…) would fail
///   again: the window is not retried;
/// - both count in ``Counters/failed`` with the reason in
///   ``Counters/lastError``;
/// - the queue holds at most ``Configuration/maxQueuedWindows`` windows and
///   ``Configuration/maxQueuedBytes`` bytes: past either, the OLDEST are
///   dropped (after an outage the recent windows are the ones people look
///   at) and counted in ``Counters/dropped``.
///
/// Nothing is kept on disk: the local store keeps every window anyway, and
/// Pyroscope's ingest is not idempotent (a window sent twice counts twice),
/// so delivery is at most once per attempt that got an answer — at least
/// once only across timeouts, as with every client of this API.
///
/// Thread-safe. Call ``close(timeout:)`` at shutdown: the thread holds the pusher.
public final class PyroscopePusher: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var url: String
        /// Pyroscope's application name (`service_name`).
        public var appName: String
        /// Labels of every window (per-window ones are merged over them).
        public var labels: [String: String] = [:]
        /// The sampling frequency, Hz.
        public var sampleRate: Int
        public var spyName = PyroscopeRequest.defaultSpyName
        public var bearerToken: String? = nil
        public var tenantID: String? = nil
        public var headers: [String: String] = [:]
        /// Seconds for one request, connection included.
        public var requestTimeout: Double = 10
        /// Tries per window (1: no retry). pyroscope-java allows 8
        /// (DEFAULT_INGEST_MAX_RETRIES, agent/src/main/java/io/pyroscope/javaagent/config/Config.java);
        /// 5 tries span 1+2+4+8 = 15 s of backoff at the defaults, one or two
        /// windows, so the queue does not grow far behind one window.
        public var maxAttempts = 5
        /// pyroscope-java's ExponentialBackoff: 1 s doubling to 30 s.
        public var backoffBase: Double = 1
        public var backoffCap: Double = 30
        /// 64 windows: ten minutes of 10 s windows behind a server outage.
        public var maxQueuedWindows = 64
        /// 32 MiB: a third of the agent's 100 MB budget at most (gzipped
        /// windows are typically tens to hundreds of KiB).
        public var maxQueuedBytes = 32 << 20

        public init(url: String, appName: String, sampleRate: Int) {
            self.url = url
            self.appName = appName
            self.sampleRate = sampleRate
        }
    }

    /// For the agent's /metrics (see ``publish(to:)``).
    public struct Counters: Sendable, Equatable {
        public var enqueued: UInt64 = 0
        /// Windows the server accepted, and their request bytes.
        public var pushed: UInt64 = 0
        public var pushedBytes: UInt64 = 0
        /// Windows given up: refused by the server, or out of tries.
        public var failed: UInt64 = 0
        /// Failed attempts followed by another try.
        public var retries: UInt64 = 0
        /// Windows dropped past the queue bound, or left at close.
        public var dropped: UInt64 = 0
        /// Windows waiting (the one being sent included), and their bytes.
        public var queued = 0
        public var queuedBytes = 0
        public var lastError: String? = nil
        public var lastErrorTime: Date? = nil
    }

    private struct Entry {
        var request: PyroscopeRequest
        var attempts = 0
    }

    public let configuration: Configuration
    public let server: PyroscopeServer
    private let session: URLSession
    private let log: @Sendable (String) -> Void
    private let cond = NSCondition()
    // Everything below is guarded by `cond`.
    private var queue: [Entry] = []
    private var inFlight: Entry? = nil
    private var counters = Counters()
    private var consecutiveFailures = 0
    private var nextAttempt = Date.distantPast
    private var stopping = false
    private var stopDeadline = Date.distantFuture
    private var stopped = false
    private var isIdle: Bool { queue.isEmpty && inFlight == nil }
    private var rng = SystemRandomNumberGenerator()

    /// Checks the URL, credentials, application name and labels (so a
    /// mistake shows at start, not as failed pushes) and starts the sender
    /// thread. `log` gets one line per event worth a human's attention
    /// (default: stderr).
    public init(_ configuration: Configuration,
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data("sprof: pyroscope: \($0)\n".utf8)) })
        throws(AgentError) {
        server = try PyroscopeServer(url: configuration.url, bearerToken: configuration.bearerToken,
                                     tenantID: configuration.tenantID, headers: configuration.headers)
        guard configuration.sampleRate > 0 else { throw .pyroscopeBadURL(server.displayURL, reason: "the sample rate must be positive") }
        guard configuration.requestTimeout > 0, configuration.maxAttempts >= 1, configuration.backoffBase > 0,
              configuration.backoffCap >= configuration.backoffBase, configuration.maxQueuedWindows >= 1,
              configuration.maxQueuedBytes >= 1 else {
            throw .pyroscopeBadURL(server.displayURL, reason: "bad pusher configuration: bounds must be positive and backoffCap ≥ backoffBase")
        }
        _ = try PyroscopeRequest.labelSet(appName: configuration.appName, labels: configuration.labels)
        self.configuration = configuration
        self.log = log
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = configuration.requestTimeout
        config.timeoutIntervalForResource = configuration.requestTimeout
        config.httpMaximumConnectionsPerHost = 1
        session = URLSession(configuration: config, delegate: SessionDelegate(), delegateQueue: nil)
        let thread = Thread { [self] in self.run() }
        thread.name = "sprof-pyroscope"
        thread.start()
    }

    deinit { session.invalidateAndCancel() }

    /// Refuses what corelibs' URLSession would otherwise do on its own:
    /// follow a redirect (the Authorization header would go to another
    /// host, or be dropped and fail with 401 there: pyroscope-go does not
    /// follow either), and wait on a 401's authentication challenge until
    /// the timeout (the credentials, if any, were already sent).
    private final class SessionDelegate: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
        func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
            completionHandler(nil)
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
                        completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
            completionHandler(.cancelAuthenticationChallenge, nil)
        }
    }

    public var currentCounters: Counters {
        cond.lock(); defer { cond.unlock() }
        return counters
    }

    /// Queues one window; returns at once (no I/O, no waiting on the sender).
    /// `labels` are merged over the configured ones for this window. Throws
    /// only for a label the server would refuse or after ``close(timeout:)``.
    public func enqueue(pprof: [UInt8], from: Date, until: Date, labels: [String: String] = [:]) throws(AgentError) {
        let merged = configuration.labels.merging(labels) { _, new in new }
        let request = try PyroscopeRequest(server: server, appName: configuration.appName, labels: merged, from: from, until: until,
                                           sampleRate: configuration.sampleRate, spyName: configuration.spyName, pprof: pprof)
        cond.lock(); defer { cond.unlock() }
        guard !stopping else { throw .pyroscopeClosed }
        counters.enqueued += 1
        queue.append(Entry(request: request))
        trimQueue()
        updateQueued()
        cond.broadcast()
    }

    /// Drops the oldest queued windows past the bounds (the one being sent is not in `queue`).
    private func trimQueue() {
        var bytes = queue.reduce(0) { $0 + $1.request.body.count }
        var victims = 0
        while !queue.isEmpty, queue.count > configuration.maxQueuedWindows || bytes > configuration.maxQueuedBytes {
            bytes -= queue.removeFirst().request.body.count
            victims += 1
        }
        guard victims > 0 else { return }
        counters.dropped += UInt64(victims)
        // One line per drop would flood a log during a long outage: the first, then one per 100.
        let before = counters.dropped - UInt64(victims)
        if before == 0 || before / 100 != counters.dropped / 100 {
            log("queue full (\(configuration.maxQueuedWindows) windows, \(configuration.maxQueuedBytes) bytes; server slow or down?): "
                + "dropped the oldest, \(counters.dropped) windows dropped so far")
        }
    }

    private func updateQueued() {
        counters.queued = queue.count + (inFlight == nil ? 0 : 1)
        counters.queuedBytes = queue.reduce(inFlight?.request.body.count ?? 0) { $0 + $1.request.body.count }
    }

    /// Waits until every queued window is sent or given up, or `timeout`
    /// seconds pass; a pending backoff is cut short. True when nothing is left.
    @discardableResult
    public func flush(timeout: Double) -> Bool {
        cond.lock(); defer { cond.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        nextAttempt = Date.distantPast
        cond.broadcast()
        while !isIdle && !stopped {
            if !cond.wait(until: deadline) { break }
        }
        return isIdle
    }

    /// Stops taking windows, tries to send what is queued for up to
    /// `timeout` seconds (a pending backoff is cut short; later ones are
    /// waited for within the time), then drops the rest (counted
    /// in ``Counters/dropped``) and stops the thread. True when everything
    /// queued was delivered or given up by the server's answer.
    @discardableResult
    public func close(timeout: Double) -> Bool {
        cond.lock(); defer { cond.unlock() }
        if !stopping {
            stopping = true
            stopDeadline = Date(timeIntervalSinceNow: timeout)
            nextAttempt = Date.distantPast
            cond.broadcast()
        }
        // The thread may be inside a request when the deadline passes.
        let hardDeadline = Date(timeIntervalSinceNow: timeout + configuration.requestTimeout + 2)
        while !stopped { if !cond.wait(until: hardDeadline) { break } }
        let done = isIdle
        if !queue.isEmpty {
            log("closing: \(queue.count) windows not sent to \(server.displayURL) within \(timeout) s, dropped")
            counters.dropped += UInt64(queue.count)
            queue.removeAll()
            updateQueued()
        }
        return done
    }

    /// Sets the pusher's counters in `metrics` (declaring them once):
    /// `sprof_pyroscope_{pushed,failed,dropped,retries}_total`,
    /// `sprof_pyroscope_pushed_bytes_total`, `sprof_pyroscope_queued_windows`.
    public func publish(to metrics: Metrics) {
        let c = currentCounters
        let values: [(String, Metrics.Kind, String, Double)] = [
            ("sprof_pyroscope_pushed_total", .counter, "Windows the Pyroscope server accepted.", Double(c.pushed)),
            ("sprof_pyroscope_pushed_bytes_total", .counter, "Request bytes of the windows Pyroscope accepted.", Double(c.pushedBytes)),
            ("sprof_pyroscope_failed_total", .counter, "Windows given up: refused by Pyroscope or out of tries.", Double(c.failed)),
            ("sprof_pyroscope_retries_total", .counter, "Failed pushes to Pyroscope that were tried again.", Double(c.retries)),
            ("sprof_pyroscope_dropped_total", .counter, "Windows dropped from the full Pyroscope queue, or left at exit.", Double(c.dropped)),
            ("sprof_pyroscope_queued_windows", .gauge, "Windows waiting to be pushed to Pyroscope.", Double(c.queued)),
        ]
        for (name, kind, help, value) in values {
            metrics.declare(name, kind, help: help)
            metrics.set(name, value)
        }
    }

    // MARK: - The sender thread

    private func run() {
        cond.lock()
        defer { stopped = true; cond.broadcast(); cond.unlock() }
        while true {
            let now = Date()
            let giveUp = stopping && now >= stopDeadline
            if !queue.isEmpty, now >= nextAttempt, !giveUp {
                var entry = queue.removeFirst()
                entry.attempts += 1
                inFlight = entry
                updateQueued()
                cond.unlock()
                let result = send(entry.request)
                cond.lock()
                inFlight = nil
                finish(entry, result)
                updateQueued()
                cond.broadcast()
                continue
            }
            if stopping && (queue.isEmpty || giveUp) { return }
            var wake = Date(timeIntervalSinceNow: 3600)
            if !queue.isEmpty { wake = min(wake, nextAttempt) }
            if stopping { wake = min(wake, stopDeadline) }
            // NSCondition.wait(until: .distantFuture) traps in corelibs Foundation
            // (the date overflows its timespec): wait at most an hour at a time.
            _ = cond.wait(until: wake)
        }
    }

    private enum Outcome {
        case delivered
        case retryable(AgentError)
        case refused(AgentError)
    }

    private func finish(_ entry: Entry, _ outcome: Outcome) {
        switch outcome {
        case .delivered:
            counters.pushed += 1
            counters.pushedBytes += UInt64(entry.request.body.count)
            if consecutiveFailures > 0 {
                log("\(server.displayURL) accepts profiles again after \(consecutiveFailures) failed attempts")
            }
            consecutiveFailures = 0
            nextAttempt = Date.distantPast
        case .retryable(let error):
            noteError(error)
            consecutiveFailures += 1
            let d = min(configuration.backoffCap, configuration.backoffBase * pow(2, Double(min(consecutiveFailures - 1, 30))))
            let delay = Double.random(in: d / 2...d, using: &rng)
            nextAttempt = Date(timeIntervalSinceNow: delay)
            if entry.attempts < configuration.maxAttempts {
                counters.retries += 1
                queue.insert(entry, at: 0)
                trimQueue()
                if consecutiveFailures == 1 || consecutiveFailures % 10 == 0 {
                    log("\(error); retrying in \(String(format: "%.1f", delay)) s (attempt \(entry.attempts) of \(configuration.maxAttempts))")
                }
            } else {
                counters.failed += 1
                if counters.failed == 1 || counters.failed % 10 == 0 {
                    log("\(error); window given up after \(entry.attempts) attempts (\(counters.failed) so far)")
                }
            }
        case .refused(let error):
            noteError(error)
            counters.failed += 1
            consecutiveFailures = 0
            nextAttempt = Date.distantPast
            if counters.failed == 1 || counters.failed % 10 == 0 {
                log("\(error); window not retried (\(counters.failed) failed so far)")
            }
        }
    }

    private func noteError(_ error: AgentError) {
        counters.lastError = "\(error)"
        counters.lastErrorTime = Date()
    }

    private final class Box: @unchecked Sendable {
        var data: Data?
        var response: URLResponse?
        var error: Error?
    }

    /// One request, synchronously (the caller does not hold the lock).
    private func send(_ r: PyroscopeRequest) -> Outcome {
        let url = server.displayURL
        var request = URLRequest(url: r.url)
        request.httpMethod = r.method
        request.httpBody = Data(r.body)
        request.timeoutInterval = configuration.requestTimeout
        for (k, v) in r.headers { request.setValue(v, forHTTPHeaderField: k) }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: request) { data, response, error in
            box.data = data
            box.response = response
            box.error = error
            done.signal()
        }
        task.resume()
        let timeout = configuration.requestTimeout
        // URLSession's timeouts count idle time; this bounds the whole exchange.
        if done.wait(timeout: .now() + timeout + 1) == .timedOut {
            task.cancel()
            _ = done.wait(timeout: .now() + 1)
            return .retryable(.pyroscopeUnreachable(url: url, reason: "no answer within \(timeout) s"))
        }
        if let error = box.error { return Self.transportOutcome(error, url: url, timeout: timeout) }
        guard let http = box.response as? HTTPURLResponse else {
            return .retryable(.pyroscopeUnreachable(url: url, reason: "not an HTTP response"))
        }
        let status = http.statusCode
        if (200..<300).contains(status) { return .delivered }
        var message = Self.serverMessage(box.data.map { [UInt8]($0) } ?? [], status: status)
        if (300..<400).contains(status), let to = http.value(forHTTPHeaderField: "Location") { message += " (to \(to))" }
        let error = AgentError.pyroscopeRejected(url: url, status: status, message: message)
        return Self.isRetryable(status: status) ? .retryable(error) : .refused(error)
    }

    /// 408 (the server could not read the body in time), 429 (rate limit)
    /// and 5xx are worth another try (pyroscope-java retries 429 and 5xx).
    static func isRetryable(status: Int) -> Bool { status == 408 || status == 429 || (500..<600).contains(status) }

    private static func transportOutcome(_ error: Error, url: String, timeout: Double) -> Outcome {
        guard let e = error as? URLError else { return .retryable(.pyroscopeUnreachable(url: url, reason: "\(error)")) }
        switch e.code {
        case .cannotConnectToHost:
            return .retryable(.pyroscopeUnreachable(url: url, reason: "connection refused (is Pyroscope running, on that port?)"))
        case .timedOut:
            return .retryable(.pyroscopeUnreachable(url: url, reason: "no answer within \(timeout) s"))
        case .cannotFindHost, .dnsLookupFailed:
            return .retryable(.pyroscopeUnreachable(url: url, reason: "cannot resolve the host name"))
        case .networkConnectionLost:
            return .retryable(.pyroscopeUnreachable(url: url, reason: "the server closed the connection (restarting?)"))
        // Only SessionDelegate cancels (a timeout is caught before the error is read).
        case .userCancelledAuthentication, .userAuthenticationRequired, .cancelled:
            return .refused(.pyroscopeRejected(url: url, status: 401, message: "Unauthorized"))
        case .serverCertificateUntrusted, .serverCertificateHasBadDate, .serverCertificateNotYetValid,
             .serverCertificateHasUnknownRoot, .secureConnectionFailed:
            return .retryable(.pyroscopeUnreachable(url: url, reason: "TLS: \(e.localizedDescription)"))
        default:
            return .retryable(.pyroscopeUnreachable(url: url, reason: e.localizedDescription))
        }
    }

    /// The server's `{"code": …, "message": …}` (pkg/util/http/error.go),
    /// else the start of the body as text, else the status's reason phrase.
    static func serverMessage(_ body: [UInt8], status: Int) -> String {
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
           let message = object["message"] as? String, !message.isEmpty {
            return message
        }
        let text = String(decoding: body.prefix(512), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "\n", with: " ")
        return text.isEmpty ? HTTPURLResponse.localizedString(forStatusCode: status) : text
    }
}

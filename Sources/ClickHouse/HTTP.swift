import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A ClickHouse server's HTTP interface (https://clickhouse.com/docs/en/interfaces/http):
/// every statement is a POST; the SQL goes in the `query` URL parameter when
/// the body carries data (`INSERT … FORMAT RowBinary`), else in the body.
/// A 200 answer is the result; anything else is an error whose body is
/// ClickHouse's own message (`Code: 60, e.displayText() = DB::Exception: Table … doesn't exist.`).
///
/// Built on URLSession (FoundationNetworking, libcurl underneath), made
/// synchronous with a semaphore: the sink calls it from its own thread and
/// `sprof query` from the main one, so nothing gains from async here, and
/// libcurl brings keep-alive, chunked answers and https for free, which a
/// hand-written socket client would have to reimplement.
public final class ClickHouseClient: Sendable {
    /// The URL without user, password and query (for messages: never shows a password).
    public let displayURL: String
    /// The database named by `?database=` in the URL, else ClickHouse's default.
    public let database: String
    /// `HOST:PORT`, to name the server where a slash would not do (titles).
    public let hostAndPort: String
    /// Seconds a statement may take, connection included.
    public let timeout: Double
    private let base: URLComponents
    private let session: URLSession

    /// `url`: `http[s]://[USER[:PASSWORD]@]HOST[:PORT][/PATH][?database=DB&SETTING=VALUE…]`.
    /// Without a port, 8123 (8443 for https), ClickHouse's HTTP ports.
    /// User and password go to ClickHouse's `user` and `password`
    /// parameters (the HTTP interface of 18.16 reads those); other query
    /// parameters (database, settings) are passed on with every statement.
    public init(url: String, timeout: Double = 10) throws(ClickHouseError) {
        guard var c = URLComponents(string: url) else { throw .badURL(url, reason: "not a URL") }
        guard let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw .badURL(url, reason: "the scheme must be http or https (ClickHouse's HTTP interface), not \(c.scheme ?? "missing")")
        }
        guard let host = c.host, !host.isEmpty else { throw .badURL(url, reason: "no host") }
        guard timeout > 0 else { throw .badURL(url, reason: "the timeout must be positive") }
        if c.port == nil { c.port = scheme == "https" ? 8443 : 8123 }
        var items = c.queryItems ?? []
        if items.contains(where: { $0.name == "query" }) {
            throw .badURL(url, reason: "the URL must not carry a query= parameter; sprof sends its own statements")
        }
        // URLComponents' user and password come percent-decoded.
        if let user = c.user { items.append(URLQueryItem(name: "user", value: user)) }
        if let password = c.password { items.append(URLQueryItem(name: "password", value: password)) }
        c.user = nil
        c.password = nil
        c.queryItems = items.isEmpty ? nil : items
        if c.path.isEmpty { c.path = "/" }
        database = items.last(where: { $0.name == "database" })?.value ?? "default"
        var shown = c
        shown.queryItems = items.filter { $0.name == "database" }
        if shown.queryItems?.isEmpty == true { shown.queryItems = nil }
        displayURL = shown.string ?? url
        hostAndPort = "\(host):\(c.port!)"
        base = c
        self.timeout = timeout
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.timeoutIntervalForResource = timeout
        config.httpMaximumConnectionsPerHost = 2
        session = URLSession(configuration: config, delegate: RefuseChallenges(), delegateQueue: nil)
    }

    /// ClickHouse answers a wrong password with 401 and `WWW-Authenticate:
    /// Basic`; without a delegate, corelibs' URLSession waits on that
    /// challenge until the timeout (seen with 18.16). The credentials are in
    /// the URL's parameters, so there is nothing else to offer: cancel.
    private final class RefuseChallenges: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
        func urlSession(_ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
                        completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
            completionHandler(.cancelAuthenticationChallenge, nil)
        }
    }

    deinit { session.invalidateAndCancel() }

    /// Runs a statement that returns nothing or a result in the format it names.
    public func execute(_ sql: String) throws(ClickHouseError) -> [UInt8] {
        try post(query: nil, body: Array(sql.utf8))
    }

    /// `INSERT INTO table (columns) FORMAT RowBinary` with `rows` as the body.
    public func insert(_ statement: String, rowBinary rows: [UInt8]) throws(ClickHouseError) {
        _ = try post(query: statement, body: rows)
    }

    /// Whether the server answers `/ping` ("Ok.").
    public func ping() -> Bool {
        var c = base
        c.path = (c.path.hasSuffix("/") ? c.path : c.path + "/") + "ping"
        c.queryItems = nil
        guard let url = c.url, let answer = try? send(URLRequest(url: url)) else { return false }
        return answer.0 == 200 && answer.1.starts(with: Array("Ok.".utf8))
    }

    private func post(query: String?, body: [UInt8]) throws(ClickHouseError) -> [UInt8] {
        var c = base
        // URLComponents leaves '&', '=' and '+' unencoded in query values (they
        // are legal in a query), which would split a password or a statement;
        // encode everything but RFC 3986's unreserved characters instead.
        let items = (base.queryItems ?? []) + (query.map { [URLQueryItem(name: "query", value: $0)] } ?? [])
        c.percentEncodedQuery = items.isEmpty ? nil : items.map { Self.encode($0.name) + "=" + Self.encode($0.value ?? "") }.joined(separator: "&")
        guard let url = c.url else { throw .badURL(displayURL, reason: "cannot build a request URL") }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        let (status, answer) = try send(request)
        guard status == 200 else { throw Self.serverError(url: displayURL, status: status, body: answer) }
        return answer
    }

    /// RFC 3986 section 2.3: only unreserved characters go unencoded.
    static func encode(_ s: String) -> String {
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    private final class Box: @unchecked Sendable {
        var data: Data?
        var response: URLResponse?
        var error: Error?
    }

    private func send(_ request: URLRequest) throws(ClickHouseError) -> (Int, [UInt8]) {
        var request = request
        request.timeoutInterval = timeout
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: request) { data, response, error in
            box.data = data
            box.response = response
            box.error = error
            done.signal()
        }
        task.resume()
        // URLSession's timeouts count idle time; this bounds the whole exchange.
        if done.wait(timeout: .now() + timeout + 1) == .timedOut {
            task.cancel()
            _ = done.wait(timeout: .now() + 1)
            throw .timedOut(url: displayURL, seconds: timeout)
        }
        if let error = box.error { throw Self.transportError(error, url: displayURL, timeout: timeout) }
        guard let http = box.response as? HTTPURLResponse else {
            throw .badAnswer(url: displayURL, reason: "not an HTTP response")
        }
        return (http.statusCode, box.data.map { [UInt8]($0) } ?? [])
    }

    static func transportError(_ error: Error, url: String, timeout: Double) -> ClickHouseError {
        guard let e = error as? URLError else { return .unreachable(url: url, reason: "\(error)") }
        switch e.code {
        case .cannotConnectToHost: return .connectionRefused(url: url)
        // Only RefuseChallenges cancels (a timeout is caught before the error is read).
        case .userCancelledAuthentication, .userAuthenticationRequired, .cancelled:
            return .server(url: url, status: 401, code: nil, message: "the server refused the user or password (HTTP 401 Unauthorized)")
        case .timedOut: return .timedOut(url: url, seconds: timeout)
        case .cannotFindHost, .dnsLookupFailed: return .unreachable(url: url, reason: "cannot resolve the host name")
        case .networkConnectionLost: return .unreachable(url: url, reason: "the server closed the connection (restarting?)")
        default: return .unreachable(url: url, reason: e.localizedDescription)
        }
    }

    /// ClickHouse's error body: `Code: N, e.displayText() = DB::Exception: MESSAGE, e.what() = DB::Exception`
    /// (18.16's HTTPHandler). Keeps the code and the message, drops the C++ decoration.
    static func serverError(url: String, status: Int, body: [UInt8]) -> ClickHouseError {
        var text = String(decoding: body.prefix(4096), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        var code: Int?
        if text.hasPrefix("Code: ") {
            let digits = text.dropFirst(6).prefix { $0.isNumber }
            code = Int(digits)
        }
        for junk in ["e.displayText() = ", "DB::Exception: "] { text = text.replacingOccurrences(of: junk, with: "") }
        if let r = text.range(of: ", e.what() = ", options: .backwards) { text = String(text[..<r.lowerBound]) }
        text = text.replacingOccurrences(of: "\n", with: " ")
        if text.isEmpty { text = HTTPURLResponse.localizedString(forStatusCode: status) }
        return .server(url: url, status: status, code: code, message: text)
    }
}

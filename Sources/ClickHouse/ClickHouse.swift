// The ClickHouse sink and query side of `sprof agent` / `sprof query` (issue 9): windows of
// samples written in batches over ClickHouse's HTTP interface, stacks stored once by hash.
// Knows profiles (SprofProfile), not BPF, ELF or symbols. The schema, the spool and the
// retention are described in README.md next to this file.
import SprofBase

/// Everything that can go wrong talking to ClickHouse, spooling batches or
/// reading profiles back; each message names the server, file or input and
/// says what to do.
public enum ClickHouseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The `--clickhouse` URL is not one we can use.
    case badURL(String, reason: String)
    /// Nothing listens at the address (ECONNREFUSED).
    case connectionRefused(url: String)
    /// No complete answer within the timeout.
    case timedOut(url: String, seconds: Double)
    /// Any other transport failure: name resolution, reset connection, TLS.
    case unreachable(url: String, reason: String)
    /// The server answered with an HTTP error; `code` is ClickHouse's
    /// exception code (`Code: 60, e.displayText() = …`) when the body has one.
    case server(url: String, status: Int, code: Int?, message: String)
    /// The server answered 200 with bytes that are not what the query asked for.
    case badAnswer(url: String, reason: String)
    /// `sprof query` against a database without sprof's tables.
    case noTables(url: String, database: String)
    /// The spool directory or one of its files.
    case spool(path: String, operation: String, errno: Int32)
    /// The spool directory, or the way to it, is not safe to write to: a
    /// symlink, another user's, writable by others (Sources/Base/SafeWrite.swift).
    case unsafeSpool(SafeWriteError)
    /// A window the schema cannot hold (see README.md, "Samples").
    case badWindow(String)
    /// A `--where` filter or `--keep` list that cannot be expressed.
    case badFilter(String)
    /// A `--since` / `--until` that is not a time.
    case badTime(String)
    /// `write` after `close`.
    case closed

    public var description: String {
        switch self {
        case .badURL(let u, let r):
            return "--clickhouse \(u): \(r) (expected http://HOST[:PORT][/?database=DB], e.g. http://127.0.0.1:8123)"
        case .connectionRefused(let u):
            return "ClickHouse at \(u) refused the connection: is clickhouse-server running, and listening there (http_port and listen_host in its config.xml)?"
        case .timedOut(let u, let s):
            return "ClickHouse at \(u) did not answer within \(s) s: the server is overloaded or unreachable (a firewall dropping packets); check it, or raise the timeout"
        case .unreachable(let u, let r):
            return "cannot reach ClickHouse at \(u): \(r)"
        case .server(let u, let status, let code, let m):
            var hint = ""
            switch code {
            case 60?: hint = " (the agent creates sprof's tables on its first write; for `sprof query`, check the URL's database)"
            case 81?: hint = " (create the database, or name another with ?database=DB in the URL)"
            case 192?, 193?, 194?, 516?: hint = " (check the user and password in the URL: http://USER:PASSWORD@HOST:8123)"
            case 241?: hint = " (the server ran out of memory: narrow --since/--until or --where, or raise max_memory_usage)"
            default: if status == 401 || status == 403 { hint = " (check the user and password in the URL: http://USER:PASSWORD@HOST:8123)" }
            }
            return "ClickHouse at \(u) answered HTTP \(status): \(m)\(hint)"
        case .badAnswer(let u, let r):
            return "ClickHouse at \(u) sent an answer sprof cannot read: \(r) (is this a ClickHouse HTTP port, 8123 by default, and not a proxy's error page?)"
        case .noTables(let u, let db):
            return "ClickHouse at \(u) has no sprof tables in database \(db): start `sprof agent --clickhouse \(u)` to write some, or name the database the agent writes to (?database=DB)"
        case .spool(let p, let op, let e):
            return "spool \(p): \(op) failed: \(ClickHouseSyscalls.errorString(e))"
        case .unsafeSpool(let e):
            return "spool: \(e)"
        case .badWindow(let r):
            return "cannot write this window to ClickHouse: \(r)"
        case .badFilter(let r):
            return r
        case .badTime(let r):
            return r
        case .closed:
            return "the ClickHouse sink is closed"
        }
    }

    /// Whether trying the same batch again later can succeed: transport
    /// failures and server-side trouble can pass; a batch the server cannot
    /// parse (HTTP 400, or the input-format codes below) never will.
    var isRetryable: Bool {
        switch self {
        case .connectionRefused, .timedOut, .unreachable, .badAnswer: return true
        case .server(_, let status, let code, _):
            // ClickHouse's ErrorCodes.cpp: 16 NO_SUCH_COLUMN_IN_TABLE, 27 CANNOT_PARSE_INPUT_ASSERTION_FAILED,
            // 33 CANNOT_READ_ALL_DATA, 53 TYPE_MISMATCH, 62 SYNTAX_ERROR. 18.16 answers 400 for
            // syntax errors and 500 for the others (checked against the Debian package).
            if status == 400 { return false }
            if let code, [16, 27, 33, 53, 62].contains(code) { return false }
            return true
        default: return false
        }
    }

    /// Whether the error says the tables (or the database) are missing, so
    /// the sink should create the schema again before retrying.
    var isMissingTable: Bool {
        if case .server(_, _, let code, _) = self, code == 60 || code == 81 { return true }
        return false
    }
}

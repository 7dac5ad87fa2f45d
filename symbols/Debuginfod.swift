import SprofBase
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Fetches separate debug files by build-id from debuginfod servers, through
/// elfutils' client library, libdebuginfod (`elfutils/debuginfod.h`;
/// protocol: debuginfod(8), "WEBAPI": `GET /buildid/HEX/debuginfo`).
///
/// The library is loaded with `dlopen("libdebuginfod.so.1")` the first time
/// a debug file is asked for, not linked, as libdw itself does
/// (libdwfl/debuginfod-client.c): sprof runs where it is absent, and only
/// asking a server then fails, with
/// ``SymbolError/debuginfodUnavailable(library:reason:)``.
///
/// Settings. libdebuginfod 0.188 has no API for its settings: it reads them
/// with `getenv` at every query (`debuginfod_query_server` in
/// debuginfod/debuginfod-client.c), `DEBUGINFOD_PROGRESS` and
/// `DEBUGINFOD_VERBOSE` once in `debuginfod_begin`
/// (debuginfod-client-config(7) describes each):
/// - `DEBUGINFOD_URLS`: the servers, separated by spaces, asked in parallel;
///   the first to answer wins.
/// - `DEBUGINFOD_CACHE_PATH`: where downloaded files are kept, on disk, by
///   the library itself (`<cache>/<build-id>/debuginfo`); else
///   `$XDG_CACHE_HOME/debuginfod_client`, else `~/.cache/debuginfod_client`
///   (or `~/.debuginfod_client_cache` if that already exists). A file in the
///   cache is not downloaded again; files unused for a week are removed
///   (`max_unused_age_s` in the cache directory). A miss is remembered there
///   too, as an empty file, for 10 minutes (`cache_miss_s`).
/// - `DEBUGINFOD_TIMEOUT`: seconds a server may take to send 100 KiB
///   (libcurl's `CURLOPT_LOW_SPEED_TIME` with `CURLOPT_LOW_SPEED_LIMIT`
///   100 KiB/s): a slower server is given up on. The library's default is
///   90 s, chosen for a debugger waiting for one file; a profile asks for
///   every module in turn, and a failed query is tried 3 times
///   (`DEBUGINFOD_RETRY_LIMIT`, default 2 retries), so when the variable is
///   unset this client sets it to ``defaultTimeoutSeconds``. A value the user
///   set is kept. It bounds stalls, not downloads: a large file arriving at
///   more than 100 KiB/s is never cut off (`DEBUGINFOD_MAXTIME` does that).
/// - `DEBUGINFOD_MAXTIME`, `DEBUGINFOD_MAXSIZE`, `DEBUGINFOD_RETRY_LIMIT`,
///   `DEBUGINFOD_HEADERS_FILE`, `DEBUGINFOD_PROGRESS`, `DEBUGINFOD_VERBOSE`:
///   passed through as they are.
///
/// Because the library reads only the process environment, a client made
/// from another environment (``fromEnvironment(_:)`` with an argument)
/// exports those variables of its environment to the process (`setenv(3)`,
/// `unsetenv(3)`) before each query, under a process-wide lock that also
/// keeps two clients' queries apart. With the default argument that only
/// ever sets `DEBUGINFOD_TIMEOUT`, once. `setenv` is not safe while another
/// thread calls `getenv`: make the client before starting threads that read
/// the environment.
///
/// Each client owns one `debuginfod_client` handle (made at the first query,
/// ended in `deinit`); a handle is not thread-safe, so queries are
/// serialized. A query blocks for as long as the servers take: call it off
/// any thread that must stay responsive. Each build-id is asked at most once
/// per client: a miss or a failure is remembered in memory and answered from
/// there (a hit is answered from the library's disk cache).
public final class DebuginfodClient: @unchecked Sendable {
    // @unchecked: the only mutable state, the C handle and the answers,
    // lives in `state` and is touched only under its lock.

    /// `DEBUGINFOD_TIMEOUT` when the environment does not set it: a third of
    /// the library's 90 s. At the 100 KiB/s floor it measures, 30 s is ample
    /// for a server to start sending; and a dead or stalled server costs at
    /// most 3 × 30 s per module instead of 3 × 90 s.
    public static let defaultTimeoutSeconds = 30

    /// The soname (`DEBUGINFOD_SONAME` in `elfutils/debuginfod.h`).
    public static let libraryName = "libdebuginfod.so.1"

    /// `DEBUGINFOD_URLS`, its spaces normalized: the servers asked (for messages).
    public let urls: String

    /// The libdebuginfod variables this client runs with, nil for unset, in
    /// the order they are exported.
    let settings: [(name: String, value: String?)]

    private struct State {
        /// Made at the first query (so that a missing library is an error
        /// of the query, not of making the client).
        var handle: OpaquePointer?
        /// Build-ids already asked for that gave no file: nil for "not
        /// found", else the error.
        var answered: [BuildID: SymbolError?] = [:]
    }
    private let state = Mutex(State())

    /// Keeps queries of all clients apart while each exports its settings
    /// (see the type's documentation).
    private static let environmentLock = Mutex(())

    /// The variables libdebuginfod 0.188 reads (debuginfod.h's `*_ENV_VAR`).
    static let variableNames = [
        "DEBUGINFOD_URLS", "DEBUGINFOD_CACHE_PATH", "DEBUGINFOD_TIMEOUT", "DEBUGINFOD_MAXTIME",
        "DEBUGINFOD_MAXSIZE", "DEBUGINFOD_RETRY_LIMIT", "DEBUGINFOD_HEADERS_FILE",
        "DEBUGINFOD_PROGRESS", "DEBUGINFOD_VERBOSE",
    ]

    init(urls: String, settings: [(name: String, value: String?)]) {
        self.urls = urls
        self.settings = settings
    }

    /// A client for the servers of `DEBUGINFOD_URLS` in `env`; nil when it is
    /// unset or blank (debuginfod is not configured: nothing to ask). Does
    /// not load the library (see the type's documentation).
    public static func fromEnvironment(
        _ env: [String: String] = ProcessInfo.processInfo.environment
    ) -> DebuginfodClient? {
        let servers = (env["DEBUGINFOD_URLS"] ?? "").split(whereSeparator: \.isWhitespace)
        guard !servers.isEmpty else { return nil }
        var settings: [(name: String, value: String?)] = []
        for name in variableNames {
            var value = env[name]
            if name == "DEBUGINFOD_TIMEOUT", value?.allSatisfy(\.isWhitespace) ?? true {
                value = String(defaultTimeoutSeconds)
            }
            settings.append((name, value))
        }
        return DebuginfodClient(urls: servers.joined(separator: " "), settings: settings)
    }

    deinit {
        let handle = state.withLock { $0.handle }
        if let handle, case .success(let lib) = Self.library { lib.end(handle) }
    }

    /// The path of the separate debug file (the `objcopy --only-keep-debug`
    /// kind: DWARF sections, no code) for `buildID`, downloaded into the
    /// library's cache if it is not there yet (`debuginfod_find_debuginfo`);
    /// nil when no server has it (the library's `-ENOENT`, which it also
    /// gives for any HTTP error status but 406) or `buildID` is empty.
    ///
    /// The file is in the cache described in the type's documentation;
    /// nothing here deletes it.
    public func debugInfoPath(for buildID: BuildID) throws(SymbolError) -> String? {
        guard !buildID.bytes.isEmpty else { return nil }  // length 0 would mean "hex string" to the library
        let lib = try Self.library.get()
        return try state.withLock { (state) throws(SymbolError) -> String? in
            if let answer = state.answered[buildID] {
                if let error = answer { throw error }
                return nil
            }
            let result: Result<String?, SymbolError> = Self.environmentLock.withLock { _ in
                exportSettings()
                if state.handle == nil {
                    state.handle = lib.begin()
                    if state.handle == nil { return .failure(.debuginfodClientFailed(urls: urls)) }
                }
                return query(lib, state.handle!, buildID)
            }
            switch result {
            case .success(let path?):
                return path
            case .success(nil):
                state.answered[buildID] = .some(nil)
                return nil
            case .failure(let error):
                // A handle that could not be made is tried again next time.
                if case .debuginfodFailed = error { state.answered[buildID] = .some(error) }
                throw error
            }
        }
    }

    /// One `debuginfod_find_debuginfo`: the cached file's path (the fd it
    /// returns closed, the `malloc`ed path freed), nil for `-ENOENT`.
    private func query(_ lib: Library, _ handle: OpaquePointer, _ buildID: BuildID) -> Result<String?, SymbolError> {
        var cPath: UnsafeMutablePointer<CChar>? = nil
        // The library formats the bytes as hex itself ("%02x" each).
        let rc = buildID.bytes.withUnsafeBufferPointer { b in
            lib.findDebuginfo(handle, b.baseAddress, Int32(b.count), &cPath)
        }
        defer { free(cPath) }
        guard rc >= 0 else {
            if rc == -ENOENT { return .success(nil) }
            return .failure(.debuginfodFailed(buildID: buildID, urls: urls, errno: -rc))
        }
        _ = Glibc.close(rc)
        // On success the library always sets the path (a failed strdup is
        // a -ENOMEM result instead); guard anyway.
        guard let cPath else { return .failure(.debuginfodFailed(buildID: buildID, urls: urls, errno: EIO)) }
        return .success(String(cString: cPath))
    }

    /// Makes the process environment hold this client's settings (only
    /// those that differ are written).
    private func exportSettings() {
        for (name, value) in settings {
            let current = getenv(name).map { String(cString: $0) }
            guard current != value else { continue }
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
    }

    // MARK: - The library

    /// The libdebuginfod entry points sprof uses (declared in
    /// `elfutils/debuginfod.h`; `debuginfod_client *` is opaque).
    struct Library: @unchecked Sendable {
        // @unchecked: C function pointers into a library never unloaded.
        typealias Begin = @convention(c) () -> OpaquePointer?
        typealias End = @convention(c) (OpaquePointer?) -> Void
        /// `int debuginfod_find_debuginfo(debuginfod_client *, const unsigned
        /// char *build_id, int build_id_len, char **path)`: an fd, or a
        /// negative errno.
        typealias FindDebuginfo = @convention(c) (
            OpaquePointer?, UnsafePointer<UInt8>?, Int32, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        ) -> Int32

        let begin: Begin
        let end: End
        let findDebuginfo: FindDebuginfo
    }

    /// Loaded once per process, on first use; never unloaded (libcurl, which
    /// it initializes, must not be unloaded).
    static let library: Result<Library, SymbolError> = loadLibrary(libraryName)

    /// `dlopen` + `dlsym` of `name`; the error says what to install.
    static func loadLibrary(_ name: String) -> Result<Library, SymbolError> {
        guard let dl = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
            return .failure(.debuginfodUnavailable(library: name, reason: dlerror().map { String(cString: $0) } ?? "dlopen failed"))
        }
        func symbol<T>(_ symbolName: String, as type: T.Type) -> Result<T, SymbolError> {
            guard let p = dlsym(dl, symbolName) else {
                let reason = dlerror().map { String(cString: $0) } ?? "\(symbolName) not found"
                return .failure(.debuginfodUnavailable(library: name, reason: reason))
            }
            return .success(unsafeBitCast(p, to: type))
        }
        do throws(SymbolError) {
            return .success(Library(
                begin: try symbol("debuginfod_begin", as: Library.Begin.self).get(),
                end: try symbol("debuginfod_end", as: Library.End.self).get(),
                findDebuginfo: try symbol("debuginfod_find_debuginfo", as: Library.FindDebuginfo.self).get()))
        } catch {
            dlclose(dl)
            return .failure(error)
        }
    }
}

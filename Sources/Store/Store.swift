// The local profile store of `sprof agent` (issue 9): one gzipped pprof per window in a
// directory, kept by age and total size; read back and merged by `sprof report --store`.
// Knows profiles (SprofProfile), not BPF, ELF or symbols.
import Foundation
import SprofBase
import SprofProfile
#if canImport(Glibc)
import Glibc
#endif

/// A directory of profile windows, one gzipped pprof file each (named as
/// WindowName.swift explains, so that listing by time decodes nothing).
///
/// Crash safety: a window is written to a hidden temporary file in its day
/// directory, `fsync`ed, renamed to its name and the directory `fsync`ed
/// (rename(2) is atomic; the directory fsync makes the rename survive a
/// crash, fsync(2) "NOTES"). Readers list names ending in `.pb.gz` only, so
/// they never see a window half-written; after `kill -9` at most a temporary
/// file is left, which readers skip (and name) and retention removes once it
/// is ``staleTemporaryAge`` old. A window that is damaged anyway (a disk
/// error, a copy cut short) is skipped and named by ``load(since:until:where:)``,
/// never fatal to a report.
///
/// Stateless: every call works on the directory as it is, so one process can
/// write while others read and apply retention.
public struct ProfileStore: Sendable {
    /// The store directory, without a trailing `/`.
    public let directory: String

    /// A temporary file this old (by modification time) belongs to a write
    /// that will never finish: writing one window takes milliseconds, even a
    /// large one on a slow disk well under a minute, so 15 minutes is far
    /// past any live write.
    public static let staleTemporaryAge: TimeInterval = 15 * 60

    /// The longest window the store takes: one day. Listing a range then
    /// reads the day directories it covers and the one before (see
    /// WindowName.swift); the agent's windows are 10 s.
    public static let maxWindowNanos: Int64 = WindowName.nanosPerDay

    /// Directories 0700, windows 0600 (SafeFile's modes): profiles name
    /// every process, command and binary of the machine, so only the user
    /// that writes the store (root, for the agent) reads it.
    static let directoryMode: mode_t = SafeFile.privateDirectoryMode
    static let fileMode: mode_t = SafeFile.privateFileMode

    /// Opens the store at `directory`, creating it (and its parents) when
    /// `create` is true; a reader passes false, so a mistyped path is an
    /// error rather than a new empty store.
    public init(directory: String, create: Bool = true) throws(StoreError) {
        var d = directory
        while d.count > 1 && d.hasSuffix("/") { d.removeLast() }
        self.directory = d
        if create { try Self.makeDirectories(d) }
        let st: FileStatus
        do { st = try Syscalls.stat(d) } catch {
            if error.code == ENOENT || error.code == ENOTDIR { throw .missingDirectory(d) }
            throw .io(operation: "reading the store directory", path: d, errno: error.code)
        }
        guard st.isDirectory else { throw .notADirectory(d) }
    }

    /// The standard place for the store: `/var/lib/sprof/store` for root
    /// (systemd's StateDirectory=sprof, systemd.exec(5), is /var/lib/sprof),
    /// else `$XDG_STATE_HOME/sprof/store` (the XDG Base Directory
    /// Specification 0.8: "data that should persist between (application)
    /// restarts", ignored unless absolute), else `~/.local/state/sprof/store`
    /// (the specification's default for `$XDG_STATE_HOME`).
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment,
                                        effectiveUserID: UInt32? = nil) -> String {
        if (effectiveUserID ?? Syscalls.geteuid()) == 0 { return "/var/lib/sprof/store" }
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/sprof/store" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/state/sprof/store"
    }

    // MARK: Writing

    /// Stores `window` as `<day>/<start>-<end>-<host>.pb.gz` and returns its
    /// path. `host` defaults to the window's `host` label, else this
    /// machine's name. The file appears whole or not at all: on any failure
    /// (a full disk is ``StoreError/diskFull(directory:bytes:)``) nothing of
    /// it is left, and the next write is unaffected.
    @discardableResult
    public func write(_ window: Profile, host: String? = nil) throws(StoreError) -> String {
        let start = window.timeNanos
        guard start > 0 else { throw .badWindow("it has no start time (the profile's time_nanos is \(start)); set it to the window's start") }
        guard window.durationNanos >= 0, window.durationNanos <= Self.maxWindowNanos else {
            throw .badWindow("its duration is \(window.durationNanos) ns; a window lasts from 0 ns to one day")
        }
        let (end, overflow) = start.addingReportingOverflow(window.durationNanos)
        guard !overflow else { throw .badWindow("its end (time_nanos + duration_nanos) is past the year 2262") }
        let hostName = WindowName.sanitizeHost(host ?? window.samples.lazy.compactMap { $0.label("host")?.string }.first ?? Syscalls.hostname())
        let bytes: [UInt8]
        do { bytes = try Pprof.encode(window) } catch { throw .encoding(error) }

        let dayPath = directory + "/" + WindowName.dayName(WindowName.day(ofNanos: start))
        let name = WindowName.file(start: start, end: end, host: hostName)
        let path = dayPath + "/" + name
        var createdDay = false
        // Twice at most: retention may remove an empty day directory between
        // our mkdir and open (it spares today's, but a window can be of yesterday).
        // SafeFile (Sources/Base/SafeWrite.swift): the day directory opened
        // once and checked (ours, not a symlink); the window created
        // O_EXCL|O_NOFOLLOW under an unpredictable name beside its own name
        // (`.<name>.tmp-<pid>-<random>`, what WindowName.parseTemporary reads).
        var attempt = 0
        while true {
            createdDay = try makeDayDirectory(dayPath, bytes: bytes.count) || createdDay
            if (try? Syscalls.stat(path)) != nil { throw .windowExists(path: path) }
            do {
                try SafeFile.write(bytes, to: path, mode: Self.fileMode)
                break
            } catch {
                if error.errno == ENOENT && attempt == 0 { attempt += 1; continue }
                throw safeError(error, path, bytes: bytes.count)
            }
        }
        if createdDay { try syncDirectory(directory) }
        return path
    }

    /// Creates the day directory if needed (0700, checked as SafeFile
    /// checks the store's own); true if it did.
    private func makeDayDirectory(_ path: String, bytes: Int) throws(StoreError) -> Bool {
        // The store itself is not made again here: removed under a running
        // agent, it is an error to see, not a directory to recreate silently.
        do { _ = try Syscalls.stat(directory) } catch {
            if error.code == ENOENT { throw .missingDirectory(directory) }
        }
        do { return try SafeFile.makePrivateDirectory(path, mode: Self.directoryMode) } catch {
            if error.errno == ENOENT { throw .missingDirectory(directory) }
            throw safeError(error, path, bytes: bytes)
        }
    }

    private func safeError(_ e: SafeWriteError, _ path: String, bytes: Int) -> StoreError {
        guard case .system(let op, let p, let code) = e else { return .unsafe(e) }
        return fileError(Errno(code), op, p, bytes: bytes)
    }

    private func fileError(_ e: Errno, _ operation: String, _ path: String, bytes: Int) -> StoreError {
        e.code == ENOSPC || e.code == EDQUOT ? .diskFull(directory: directory, bytes: bytes) : .io(operation: operation, path: path, errno: e.code)
    }

    /// fsync(2) of a directory; file systems that cannot say EINVAL, which
    /// leaves nothing to do.
    private func syncDirectory(_ path: String) throws(StoreError) {
        let fd: Int32
        do { fd = try Syscalls.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } catch {
            throw .io(operation: "opening (to fsync) the directory", path: path, errno: error.code)
        }
        defer { try? Syscalls.close(fd) }
        do { try Syscalls.fsync(fd) } catch {
            if error.code != EINVAL {
                throw .io(operation: "fsync of the directory (the window is in place but may not survive a crash)", path: path, errno: error.code)
            }
        }
    }

    /// Creates the store directory and its parents, 0700; an existing one
    /// must be a real directory owned by this user and not writable by
    /// others (``SafeFile/makePrivateDirectory(_:mode:)``): the agent runs as
    /// root, and a store another user can redirect or fill is theirs.
    static func makeDirectories(_ path: String) throws(StoreError) {
        do { try SafeFile.makePrivateDirectory(path, mode: directoryMode) } catch {
            switch error {
            case .notADirectory(let p): throw .notADirectory(p)
            case .system(_, _, let code): throw .cannotCreate(directory: path, errno: code)
            default: throw .unsafe(error)
            }
        }
    }

    // MARK: Listing

    /// The windows that overlap `[since, until)` (a window is taken whole
    /// or not at all: samples carry no time of their own), oldest first,
    /// from the file names alone. nil: no bound.
    public func windows(since: Date? = nil, until: Date? = nil) throws(StoreError) -> [WindowFile] {
        try scan(since: since, until: until).windows
    }

    /// Window files and temporary files overlapping the range (all of them with no bounds).
    func scan(since: Date?, until: Date?) throws(StoreError) -> (windows: [WindowFile], temporaries: [String]) {
        let s = since.map(Self.nanos) ?? .min
        let u = until.map(Self.nanos) ?? .max
        let firstDay = since == nil ? Int64.min : WindowName.day(ofNanos: s) - 1
        let lastDay = until == nil ? Int64.max : WindowName.day(ofNanos: u)
        func overlaps(_ start: Int64, _ end: Int64) -> Bool {
            start < u && (end > s || (start == end && start >= s))
        }
        var windows: [WindowFile] = []
        var temporaries: [String] = []
        for (dayName, _) in try days() {
            guard let day = WindowName.day(ofName: dayName), day >= firstDay, day <= lastDay else { continue }
            let dayPath = directory + "/" + dayName
            let names: [String]
            do { names = try Syscalls.listDirectory(dayPath) } catch {
                if error.code == ENOENT { continue }   // removed by retention meanwhile
                throw .io(operation: "listing", path: dayPath, errno: error.code)
            }
            for name in names {
                if let w = WindowName.parse(name) {
                    if overlaps(w.start, w.end) { windows.append(WindowFile(path: dayPath + "/" + name, startNanos: w.start, endNanos: w.end, host: w.host)) }
                } else if let w = WindowName.parseTemporary(name), overlaps(w.start, w.end) {
                    temporaries.append(dayPath + "/" + name)
                }
            }
        }
        windows.sort { ($0.startNanos, $0.endNanos, $0.host) < ($1.startNanos, $1.endNanos, $1.host) }
        return (windows, temporaries.sorted())
    }

    /// The day directories (name, day number), oldest first.
    private func days() throws(StoreError) -> [(String, Int64)] {
        let names: [String]
        do { names = try Syscalls.listDirectory(directory) } catch {
            if error.code == ENOENT || error.code == ENOTDIR { throw .missingDirectory(directory) }
            throw .io(operation: "listing the store", path: directory, errno: error.code)
        }
        return names.compactMap { n in WindowName.day(ofName: n).map { (n, $0) } }.sorted { $0.1 < $1.1 }
    }

    // MARK: Reading

    /// A file left out of a merge, and why.
    public struct Skipped: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// The merge of a range of windows.
    public struct Loaded: Sendable {
        /// Every sample of the windows merged (``Profile/merging(_:)``), after the label filter.
        public var profile: Profile
        /// The windows merged, oldest first.
        public var windows: [WindowFile]
        /// Files in the range that were not: damaged or cut-short windows,
        /// windows that cannot merge with the others, temporary files.
        public var skipped: [Skipped]
    }

    /// Merges the windows overlapping `[since, until)` into one profile,
    /// keeping only samples that pass `filter` (``LabelMatch/matches(_:all:)``: every key, a repeated key
    /// meaning alternatives; before merging, so
    /// memory holds the matching samples only). A window that cannot be
    /// read, decoded or merged is skipped and named, never fatal: a window
    /// damaged by a crash must not break every later report. No window in
    /// the range at all is ``StoreError/noWindows(since:until:directory:)``.
    public func load(since: Date? = nil, until: Date? = nil, where filter: [LabelMatch] = []) throws(StoreError) -> Loaded {
        if let since, let until, since >= until {
            throw .badTime("the range is empty: \(StoreTime.format(since)) is not before \(StoreTime.format(until))")
        }
        let (files, temporaries) = try scan(since: since, until: until)
        guard !files.isEmpty else {
            throw .noWindows(since: since.map(StoreTime.format) ?? "the beginning", until: until.map(StoreTime.format) ?? "the end",
                             directory: directory)
        }
        var merger = ProfileMerger()
        var merged: [WindowFile] = []
        var skipped: [Skipped] = temporaries.map {
            Skipped(path: $0, reason: "a temporary file of an unfinished write (being written now, or left by a crash; retention removes it)")
        }
        for file in files {
            var window: Profile
            do {
                let bytes = try Self.readFile(file.path)
                // Windows are always gzip (RFC 1952 section 2.3.1: ID1 0x1f, ID2 0x8b). Anything else,
                // an empty file included, would decode as an empty protobuf message: a damaged window.
                guard bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b else {
                    skipped.append(Skipped(path: file.path, reason: bytes.isEmpty ? "empty (cut short by a crash or a full disk?)"
                                                                          : "not gzip-compressed, so not a window sprof wrote (damaged?)"))
                    continue
                }
                window = try Pprof.decode(bytes, path: file.path)
            } catch let e as Errno {
                // Removed by retention between listing and reading: not in the range any more.
                if e.code == ENOENT { continue }
                skipped.append(Skipped(path: file.path, reason: "cannot be read: \(e.text)"))
                continue
            } catch let e as ProfileError {
                skipped.append(Skipped(path: file.path, reason: Self.reason(e, file.path)))
                continue
            } catch {
                skipped.append(Skipped(path: file.path, reason: "\(error)"))
                continue
            }
            if !filter.isEmpty {
                window.samples.removeAll { s in !LabelMatch.matches(s, all: filter) }
            }
            do { try merger.add(window) } catch {
                skipped.append(Skipped(path: file.path, reason: Self.reason(error, file.path)))
                continue
            }
            merged.append(file)
        }
        return Loaded(profile: merger.profile, windows: merged, skipped: skipped)
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try Syscalls.open(path, O_RDONLY | O_CLOEXEC)
        defer { try? Syscalls.close(fd) }
        return try Syscalls.readAll(fd, size: try Syscalls.fstat(fd).size + 1)
    }

    /// A profile error's message without the path it starts with.
    static func reason(_ e: ProfileError, _ path: String) -> String {
        let text = "\(e)"
        return text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text
    }

    static func nanos(_ d: Date) -> Int64 {
        let n = (d.timeIntervalSince1970 * 1e9).rounded(.down)
        return n >= 9.2e18 ? .max : n <= -9.2e18 ? .min : Int64(n)
    }

    // MARK: Retention

    /// What ``enforceRetention(maxAge:maxBytes:now:)`` did.
    public struct Retention: Sendable, Equatable {
        public var removedWindows = 0
        public var removedTemporaryFiles = 0
        /// Bytes of the files removed.
        public var freedBytes = 0
        /// The store's size after: ``totalBytes()``.
        public var remainingBytes = 0
    }

    /// Removes windows, oldest first (by start): those that ended more than
    /// `maxAge` before `now`, then more until the store's files take at most
    /// `maxBytes` (file sizes, ``totalBytes()``; a limit below the newest
    /// window's size removes every window). Temporary files older than
    /// ``staleTemporaryAge`` are removed too, and empty day directories
    /// before today's.
    @discardableResult
    public func enforceRetention(maxAge: TimeInterval? = nil, maxBytes: Int? = nil, now: Date = Date()) throws(StoreError) -> Retention {
        var result = Retention()
        var windows: [(file: WindowFile, size: Int)] = []
        var otherBytes = 0
        let staleBefore = Int64((now.timeIntervalSince1970 - Self.staleTemporaryAge).rounded(.down))
        let days = try days()
        for (dayName, _) in days {
            let dayPath = directory + "/" + dayName
            let names: [String]
            do { names = try Syscalls.listDirectory(dayPath) } catch {
                if error.code == ENOENT { continue }
                throw .io(operation: "listing", path: dayPath, errno: error.code)
            }
            for name in names {
                let path = dayPath + "/" + name
                guard let st = try? Syscalls.stat(path), st.isRegularFile else { continue }
                if let w = WindowName.parse(name) {
                    windows.append((WindowFile(path: path, startNanos: w.start, endNanos: w.end, host: w.host), st.size))
                } else if WindowName.isTemporary(name) && st.modified < staleBefore {
                    if try remove(path) {
                        result.removedTemporaryFiles += 1
                        result.freedBytes += st.size
                    }
                } else {
                    otherBytes += st.size
                }
            }
        }
        windows.sort { ($0.file.startNanos, $0.file.endNanos, $0.file.host) < ($1.file.startNanos, $1.file.endNanos, $1.file.host) }
        var total = otherBytes + windows.reduce(0) { $0 + $1.size }
        let cutoff = maxAge.map { Self.nanos(now.addingTimeInterval(-$0)) } ?? .min
        for w in windows {
            let old = w.file.endNanos <= cutoff
            let over = maxBytes.map { total > $0 } ?? false
            guard old || over else { break }   // oldest first: the rest are newer
            if try remove(w.file.path) {
                result.removedWindows += 1
                result.freedBytes += w.size
            }
            total -= w.size
        }
        let today = WindowName.day(ofNanos: Self.nanos(now))
        for (dayName, day) in days where day < today {
            try? Syscalls.rmdir(directory + "/" + dayName)   // ENOTEMPTY: still has windows
        }
        result.remainingBytes = try totalBytes()
        return result
    }

    /// unlink(2); false if the file was already gone.
    private func remove(_ path: String) throws(StoreError) -> Bool {
        do { try Syscalls.unlink(path); return true } catch {
            if error.code == ENOENT { return false }
            throw .io(operation: "removing", path: path, errno: error.code)
        }
    }

    /// Bytes of every file in the store (windows, temporary files, anything
    /// else in its day directories or at its top), by file size.
    public func totalBytes() throws(StoreError) -> Int {
        let names: [String]
        do { names = try Syscalls.listDirectory(directory) } catch {
            throw .io(operation: "listing the store", path: directory, errno: error.code)
        }
        var total = 0
        for name in names {
            let path = directory + "/" + name
            guard let st = try? Syscalls.stat(path) else { continue }
            if st.isRegularFile { total += st.size; continue }
            guard st.isDirectory, WindowName.day(ofName: name) != nil,
                  let inner = try? Syscalls.listDirectory(path) else { continue }
            for n in inner {
                if let s = try? Syscalls.stat(path + "/" + n), s.isRegularFile { total += s.size }
            }
        }
        return total
    }
}

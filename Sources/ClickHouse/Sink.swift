import Foundation
import SprofProfile

/// Writes the agent's windows to ClickHouse in batches, losing nothing while
/// the server is down, up to a bound.
///
/// ``write(_:)`` only converts the window to rows (CPU work, no I/O) and
/// appends them to the open batch; one background thread does the rest:
/// - seals the open batch when it has ``Configuration/maxBatchRows`` rows,
///   is ``Configuration/maxBatchDelay`` old, or on ``flush(timeout:)``;
/// - spools every sealed batch to a file in ``Configuration/spoolDirectory``
///   (written atomically) before sending it, so batches survive a server
///   outage and a restart of the agent; a batch the disk refuses is kept in
///   memory under the same bound;
/// - sends the oldest batch first (stacks, then samples); on failure waits
///   with exponential backoff (``Configuration/backoffBase`` doubling to
///   ``Configuration/backoffCap``, "equal jitter": a uniform delay in
///   [d/2, d], so agents that lost the same server do not return in step)
///   and tries the same batch again;
/// - keeps the spool under ``Configuration/maxSpoolBytes`` by dropping the
///   OLDEST batches: after an outage the recent windows are the ones people
///   look at, and the oldest are the next for retention anyway; every drop is
///   counted (``Counters/droppedBatches``, ``Counters/droppedRows``) and logged.
///
/// A batch the server can never accept (HTTP 400, input it cannot parse)
/// would block the queue forever: it is moved to `rejected/` under the spool
/// directory, counted and logged, not deleted. Delivery is at least once: a
/// timeout after the server committed a batch sends it again (plain
/// MergeTree has no insert deduplication in 18.16); duplicated stacks are
/// harmless (ReplacingMergeTree, deduplicated on read).
///
/// Thread-safe. Call ``close(timeout:)`` at shutdown: the thread holds the sink.
public final class ClickHouseSink: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var url: String
        public var spoolDirectory: String
        /// Bound of the spool (files plus batches held in memory), bytes.
        public var maxSpoolBytes: Int64 = 256 << 20
        /// ClickHouse prefers few large inserts (each makes a part on disk): a
        /// batch is sealed at this many sample rows…
        public var maxBatchRows = 100_000
        /// …or when its first window is this many seconds old.
        public var maxBatchDelay: Double = 10
        public var backoffBase: Double = 0.5
        public var backoffCap: Double = 60
        /// Per HTTP request.
        public var requestTimeout: Double = 10
        /// Stacks remembered as delivered, so later batches do not repeat them
        /// (cleared when full: repeating a stack costs bytes, never correctness).
        /// 2^18 keys in a Set: a few MiB, a small part of the agent's 100 MB budget.
        public var knownStacksLimit = 1 << 18

        public init(url: String, spoolDirectory: String) {
            self.url = url
            self.spoolDirectory = spoolDirectory
        }
    }

    /// For the agent's /metrics.
    public struct Counters: Sendable, Equatable {
        public var windowsAccepted: UInt64 = 0
        /// Sample rows and batches the server accepted.
        public var rowsWritten: UInt64 = 0
        public var batchesWritten: UInt64 = 0
        public var stacksWritten: UInt64 = 0
        /// Failed attempts (each followed by a backoff).
        public var retries: UInt64 = 0
        /// Batches waiting (on disk or in memory), and their bytes.
        public var spooledBatches: Int = 0
        public var spooledBytes: Int64 = 0
        /// Batches (and their sample rows) dropped past the spool bound.
        public var droppedBatches: UInt64 = 0
        public var droppedRows: UInt64 = 0
        /// Batches the server refused for good, kept in `rejected/`.
        public var rejectedBatches: UInt64 = 0
        public var lastError: String? = nil
        public var lastErrorTime: Date? = nil
    }

    private struct Entry {
        var sequence: UInt64
        /// nil: held in memory (the disk refused it).
        var path: String?
        var batch: SpooledBatch?
        var bytes: Int64
        var rows: Int
    }

    public let configuration: Configuration
    public let client: ClickHouseClient
    private let log: @Sendable (String) -> Void
    private let cond = NSCondition()
    // Everything below is guarded by `cond`.
    private var pending = EncodedRows()
    private var pendingSince: Date? = nil
    private var queue: [Entry] = []
    private var nextSequence: UInt64 = 1
    private var counters = Counters()
    private var known = Set<StackKey>()
    private var schemaReady = false
    private var attempts = 0
    private var nextAttempt = Date.distantPast
    private var flushRequests = 0
    private var stopping = false
    private var stopDeadline = Date.distantFuture
    private var stopped = false
    /// Batches sealed but not yet in `queue` (being written to the spool).
    private var inTransit = 0
    private var isIdle: Bool { pending.isEmpty && queue.isEmpty && inTransit == 0 }
    private var rng = SystemRandomNumberGenerator()

    /// Opens (creates) the spool directory, takes up the batches a previous
    /// run left there (oldest first), and starts the sender thread.
    /// `log` gets one line per event worth a human's attention (default: stderr).
    public init(_ configuration: Configuration,
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data("sprof: clickhouse: \($0)\n".utf8)) })
        throws(ClickHouseError) {
        guard configuration.maxSpoolBytes > 0, configuration.maxBatchRows > 0, configuration.maxBatchDelay >= 0,
              configuration.backoffBase > 0, configuration.backoffCap >= configuration.backoffBase else {
            throw .badURL(configuration.url, reason: "bad sink configuration: bounds must be positive and backoffCap ≥ backoffBase")
        }
        self.configuration = configuration
        self.log = log
        client = try ClickHouseClient(url: configuration.url, timeout: configuration.requestTimeout)
        try ClickHouseSyscalls.makeDirectories(configuration.spoolDirectory)
        try ClickHouseSyscalls.makeDirectories(rejectedDirectory)
        for name in try ClickHouseSyscalls.list(configuration.spoolDirectory) {
            let path = configuration.spoolDirectory + "/" + name
            if name.hasPrefix(".batch-") && name.contains(".tmp-") {
                ClickHouseSyscalls.remove(path)  // an atomic write a crash interrupted: never a whole batch
            } else if let seq = Self.sequence(of: name), let size = ClickHouseSyscalls.size(path) {
                queue.append(Entry(sequence: seq, path: path, batch: nil, bytes: size, rows: 0))
            }
        }
        queue.sort { $0.sequence < $1.sequence }
        nextSequence = (queue.last?.sequence ?? 0) + 1
        counters.spooledBatches = queue.count
        counters.spooledBytes = queue.reduce(0) { $0 + $1.bytes }
        if !queue.isEmpty { log("\(queue.count) batches (\(counters.spooledBytes) bytes) left by an earlier run in \(configuration.spoolDirectory): sending them first") }
        let thread = Thread { [self] in self.run() }
        thread.name = "sprof-clickhouse"
        thread.start()
    }

    private var rejectedDirectory: String { configuration.spoolDirectory + "/rejected" }

    static func sequence(of name: String) -> UInt64? {
        guard name.hasPrefix("batch-"), name.hasSuffix(".sprofch") else { return nil }
        return UInt64(name.dropFirst(6).dropLast(8))
    }

    private func path(of sequence: UInt64) -> String {
        let digits = String(sequence)
        return configuration.spoolDirectory + "/batch-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".sprofch"
    }

    public var currentCounters: Counters {
        cond.lock(); defer { cond.unlock() }
        return counters
    }

    /// Converts `window` to rows and queues them; returns at once (no I/O).
    /// A window the schema cannot hold throws and nothing of it is queued.
    /// A window that would push the open batch past the spool bound (the
    /// sender stuck for long) is dropped and counted.
    public func write(_ window: Profile) throws(ClickHouseError) {
        cond.lock(); defer { cond.unlock() }
        guard !stopping else { throw .closed }
        let known = self.known, pendingStacks = pending.stackSet
        let rows = try WindowRows.encode(window) { known.contains($0) || pendingStacks.contains($0) }
        if Int64(pending.byteCount + rows.byteCount) > configuration.maxSpoolBytes {
            counters.droppedBatches += 1
            counters.droppedRows += UInt64(rows.sampleRows)
            log("window of \(rows.sampleRows) rows dropped: the open batch would exceed the spool bound of \(configuration.maxSpoolBytes) bytes")
            return
        }
        counters.windowsAccepted += 1
        guard !rows.isEmpty else { return }
        if pending.isEmpty { pendingSince = Date() }
        pending.append(rows)
        if pending.sampleRows >= configuration.maxBatchRows { cond.broadcast() }
    }

    /// Seals the open batch and waits until every batch is delivered, or
    /// `timeout` seconds pass. True when nothing is left to send.
    @discardableResult
    public func flush(timeout: Double) -> Bool {
        cond.lock(); defer { cond.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        flushRequests += 1
        defer { flushRequests -= 1 }
        // A flush is a reason to try now rather than at the end of a backoff.
        nextAttempt = Date.distantPast
        cond.broadcast()
        while !isIdle && !stopped {
            if !cond.wait(until: deadline) { break }
        }
        return isIdle
    }

    /// Stops the sender: seals the open batch, tries to deliver what is queued
    /// for up to `timeout` seconds; what is left stays in the spool directory
    /// for the next start. True when everything was delivered.
    @discardableResult
    public func close(timeout: Double) -> Bool {
        cond.lock(); defer { cond.unlock() }
        if !stopping {
            stopping = true
            stopDeadline = Date(timeIntervalSinceNow: timeout)
            nextAttempt = Date.distantPast
            cond.broadcast()
        }
        // The thread may be inside an HTTP request when the deadline passes.
        let hardDeadline = Date(timeIntervalSinceNow: timeout + configuration.requestTimeout + 2)
        while !stopped { if !cond.wait(until: hardDeadline) { break } }
        return isIdle
    }

    // MARK: - The sender thread

    private func run() {
        cond.lock()
        defer { stopped = true; cond.broadcast(); cond.unlock() }
        while true {
            let now = Date()
            if !pending.isEmpty, pending.sampleRows >= configuration.maxBatchRows || flushRequests > 0 || stopping
                || now.timeIntervalSince(pendingSince ?? now) >= configuration.maxBatchDelay {
                let rows = pending
                pending = EncodedRows()
                pendingSince = nil
                inTransit += 1
                cond.unlock()
                spool(SpooledBatch(rows))
                cond.lock()
                cond.broadcast()
                continue
            }
            let giveUp = stopping && now >= stopDeadline
            if let entry = queue.first, now >= nextAttempt, !giveUp {
                cond.unlock()
                let result = deliver(entry)
                cond.lock()
                finish(entry, result)
                cond.broadcast()
                continue
            }
            if stopping && (queue.isEmpty || giveUp) { return }
            var wake = Date.distantFuture
            if !pending.isEmpty, let since = pendingSince { wake = min(wake, since.addingTimeInterval(configuration.maxBatchDelay)) }
            if !queue.isEmpty { wake = min(wake, nextAttempt) }
            if stopping { wake = min(wake, stopDeadline) }
            // NSCondition.wait(until: .distantFuture) traps in corelibs Foundation
            // (the date overflows its timespec): wait at most an hour at a time.
            _ = cond.wait(until: min(wake, Date(timeIntervalSinceNow: 3600)))
        }
    }

    /// Writes a sealed batch to the spool (the caller does not hold the lock),
    /// dropping the oldest batches to stay under the bound.
    private func spool(_ batch: SpooledBatch) {
        let size = Int64(batch.fileSize)
        cond.lock()
        let sequence = nextSequence
        nextSequence += 1
        var victims: [Entry] = []
        if size > configuration.maxSpoolBytes {
            inTransit -= 1
            counters.droppedBatches += 1
            counters.droppedRows += UInt64(batch.sampleRows)
            cond.unlock()
            log("batch of \(batch.sampleRows) rows (\(size) bytes) dropped: larger than the whole spool bound of \(configuration.maxSpoolBytes) bytes; raise it")
            return
        }
        while counters.spooledBytes + size > configuration.maxSpoolBytes, !queue.isEmpty {
            let v = queue.removeFirst()
            counters.spooledBytes -= v.bytes
            victims.append(v)
        }
        cond.unlock()
        var droppedRows = 0
        for v in victims {
            // Rows of a batch left by an earlier run are not in memory: read its header.
            var rows = v.rows
            if let p = v.path {
                if rows == 0, let bytes = try? ClickHouseSyscalls.read(p), let b = try? SpooledBatch(decoding: bytes, path: p) { rows = b.sampleRows }
                ClickHouseSyscalls.remove(p)
            }
            droppedRows += rows
        }
        if !victims.isEmpty {
            log("spool full (\(configuration.maxSpoolBytes) bytes, server down?): dropped the \(victims.count) oldest batches, \(droppedRows) sample rows")
        }
        var entry = Entry(sequence: sequence, path: path(of: sequence), batch: nil, bytes: size, rows: batch.sampleRows)
        do {
            try ClickHouseSyscalls.writeAtomically(batch.encoded(), to: entry.path!)
        } catch {
            log("\(error); keeping the batch in memory")
            entry.path = nil
            entry.batch = batch
        }
        cond.lock()
        counters.droppedBatches += UInt64(victims.count)
        counters.droppedRows += UInt64(droppedRows)
        queue.append(entry)
        inTransit -= 1
        counters.spooledBytes += size
        counters.spooledBatches = queue.count
        if entry.path == nil { noteError("spool: cannot write to \(configuration.spoolDirectory)") }
        cond.unlock()
    }

    private enum Outcome {
        case delivered(rows: Int, stacks: [StackKey])
        case failed(ClickHouseError)
        /// The file is not a batch, or the server refused it for good.
        case setAside(String)
    }

    /// Sends one batch (the caller does not hold the lock).
    private func deliver(_ entry: Entry) -> Outcome {
        let batch: SpooledBatch
        if let b = entry.batch {
            batch = b
        } else {
            do {
                batch = try SpooledBatch(decoding: try ClickHouseSyscalls.read(entry.path!), path: entry.path!)
            } catch {
                return .setAside("\(error)")
            }
        }
        cond.lock()
        let ready = schemaReady
        cond.unlock()
        do {
            if !ready {
                try client.ensureSchema()
                cond.lock(); schemaReady = true; cond.unlock()
            }
            if batch.stackRows > 0 {
                try client.insert("INSERT INTO \(ClickHouseSchema.stacksTable) (\(ClickHouseSchema.stackColumns)) FORMAT RowBinary",
                                  rowBinary: batch.stacks)
            }
            if batch.sampleRows > 0 {
                try client.insert("INSERT INTO \(ClickHouseSchema.samplesTable) (\(ClickHouseSchema.sampleColumns)) FORMAT RowBinary",
                                  rowBinary: batch.samples)
            }
        } catch {
            if error.isMissingTable { cond.lock(); schemaReady = false; cond.unlock() }
            return error.isRetryable ? .failed(error) : .setAside("\(error)")
        }
        let keys = (try? batch.stackKeys(source: entry.path ?? "memory")) ?? []
        return .delivered(rows: batch.sampleRows, stacks: keys)
    }

    private func finish(_ entry: Entry, _ outcome: Outcome) {
        guard let i = queue.firstIndex(where: { $0.sequence == entry.sequence }) else { return }
        switch outcome {
        case .delivered(let rows, let stacks):
            queue.remove(at: i)
            if let p = entry.path { ClickHouseSyscalls.remove(p) }
            counters.batchesWritten += 1
            counters.rowsWritten += UInt64(rows)
            counters.stacksWritten += UInt64(stacks.count)
            if known.count + stacks.count > configuration.knownStacksLimit { known.removeAll(keepingCapacity: true) }
            known.formUnion(stacks)
            attempts = 0
            nextAttempt = Date.distantPast
        case .failed(let error):
            counters.retries += 1
            attempts += 1
            noteError("\(error)")
            let d = min(configuration.backoffCap, configuration.backoffBase * pow(2, Double(min(attempts - 1, 30))))
            let delay = Double.random(in: d / 2...d, using: &rng)
            if attempts == 1 || attempts % 10 == 0 {
                log("\(error); \(queue.count) batches spooled, retrying in \(String(format: "%.1f", delay)) s (attempt \(attempts))")
            }
            nextAttempt = Date(timeIntervalSinceNow: delay)
        case .setAside(let why):
            queue.remove(at: i)
            counters.rejectedBatches += 1
            noteError(why)
            if let p = entry.path {
                let target = rejectedDirectory + "/" + ((p as NSString).lastPathComponent)
                do { try ClickHouseSyscalls.rename(p, target) } catch { log("\(error)") }
                log("batch set aside in \(target), not retried: \(why)")
            } else {
                log("batch of \(entry.rows) rows dropped, not retried: \(why)")
            }
        }
        counters.spooledBatches = queue.count
        counters.spooledBytes = queue.reduce(0) { $0 + $1.bytes }
    }

    private func noteError(_ message: String) {
        counters.lastError = message
        counters.lastErrorTime = Date()
    }
}

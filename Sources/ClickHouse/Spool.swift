/// One sealed batch: the rows of one or more windows, as they go to the
/// server in two INSERTs (stacks first, so no sample row ever references a
/// stack the server lacks).
///
/// On disk (README.md, "Spool"), one file per batch, `batch-SEQUENCE.sprofch`,
/// written atomically, all integers little-endian:
///
///     offset  size  field
///     0       8     magic "SPROFCH" 0x01
///     8       4     format version (1)
///     12      4     reserved (0)
///     16      8     sample rows
///     24      8     stack rows
///     32      8     stacks bytes (S)
///     40      8     samples bytes (N)
///     48      S     stack rows in RowBinary (day, hash, frames)
///     48+S    N     sample rows in RowBinary (ClickHouseSchema.sampleColumns)
struct SpooledBatch: Equatable {
    var sampleRows: Int
    var stackRows: Int
    var stacks: [UInt8]
    var samples: [UInt8]

    static let magic: [UInt8] = Array("SPROFCH".utf8) + [1]
    static let version: UInt32 = 1
    static let headerSize = 48

    init(_ rows: EncodedRows) {
        sampleRows = rows.sampleRows
        stackRows = rows.stackRows
        stacks = rows.stacks.bytes
        samples = rows.samples.bytes
    }

    var fileSize: Int { Self.headerSize + stacks.count + samples.count }

    func encoded() -> [UInt8] {
        var w = RowBinaryWriter()
        w.bytes.reserveCapacity(fileSize)
        w.bytes.append(contentsOf: Self.magic)
        w.uint32(Self.version)
        w.uint32(0)
        w.uint64(UInt64(sampleRows))
        w.uint64(UInt64(stackRows))
        w.uint64(UInt64(stacks.count))
        w.uint64(UInt64(samples.count))
        w.bytes.append(contentsOf: stacks)
        w.bytes.append(contentsOf: samples)
        return w.bytes
    }

    /// Reads a spool file's bytes back; anything but a whole batch is an error naming `path`.
    init(decoding bytes: [UInt8], path: String) throws(ClickHouseError) {
        func bad(_ why: String) -> ClickHouseError { .badAnswer(url: path, reason: why) }
        guard bytes.count >= Self.headerSize, Array(bytes[0..<8]) == Self.magic else { throw bad("not a sprof spool file (bad magic)") }
        var r = RowBinaryReader(bytes, source: path)
        _ = try r.uint64()
        let version = try r.uint32()
        guard version == Self.version else { throw bad("spool format version \(version); this sprof writes \(Self.version)") }
        _ = try r.uint32()
        let sampleRows = try r.uint64(), stackRows = try r.uint64()
        let s = try r.uint64(), n = try r.uint64()
        guard s <= UInt64(bytes.count), n <= UInt64(bytes.count), UInt64(Self.headerSize) + s + n == UInt64(bytes.count),
              sampleRows <= n, stackRows <= s else {
            throw bad("lengths \(s) + \(n) do not add up to the file's \(bytes.count) bytes")
        }
        self.sampleRows = Int(sampleRows)
        self.stackRows = Int(stackRows)
        stacks = Array(bytes[Self.headerSize..<Self.headerSize + Int(s)])
        samples = Array(bytes[(Self.headerSize + Int(s))...])
    }

    /// The (day, hash) of each stack row, read back from the RowBinary.
    func stackKeys(source: String) throws(ClickHouseError) -> [StackKey] {
        var r = RowBinaryReader(stacks, source: source)
        var keys: [StackKey] = []
        while !r.isAtEnd {
            let day = try r.uint16()
            let hash = try r.uint64()
            _ = try r.strings()
            keys.append(StackKey(day: day, hash: hash))
        }
        return keys
    }
}

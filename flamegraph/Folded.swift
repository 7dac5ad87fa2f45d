/// Brendan Gregg's folded-stack format: one line per distinct stack,
/// `root;caller;leaf COUNT`, frames separated by `;`, the count after the last
/// space or tab (stackcollapse-*.pl output, read by flamegraph.pl).
///
/// Stored as a prefix tree of interned frame names (`StackTree`, `FrameTable`):
/// a stack is the path from the root to a node, its count the node's own
/// count. Identical stacks merge on insertion and the renderer walks the tree
/// directly; nothing is allocated per frame once a name has been seen.
public struct FoldedStacks: Sendable {
    var frames = FrameTable()
    var tree = StackTree()
    /// The sum of all counts, kept as stacks are added. Never wraps: the
    /// parser refuses counts past 2^64 - 1 (`totalOverflow`), and ``add(_:count:)``
    /// and ``merge(_:)`` clamp there (``clampedSamples``), so every inclusive
    /// count the renderer adds up fits in 64 bits.
    public private(set) var total: UInt64 = 0
    /// Samples ``add(_:count:)`` and ``merge(_:)`` left out because the total
    /// would have passed 2^64 - 1 (counts from a hostile or damaged file);
    /// at most 2^64 - 1 itself.
    public private(set) var clampedSamples: UInt64 = 0

    /// The most frames a line may have: 100,000, far more than any
    /// profiler records (sprof: 127 kernel frames and a u16 count of user
    /// frames, `RawSampleLayout.maxUserFrames`; perf: `kernel.perf_event_max_stack`,
    /// 127 by default), and few enough that one line cannot make a flame graph
    /// of more than about 20 MB (one `<g>` of ~200 bytes per frame).
    public static let maxDepth = 100_000

    public init() {}

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        /// No count after the frames (or nothing but frames on the line).
        case missingCount(line: Int)
        /// The text after the last space is not a non-negative decimal integer
        /// that fits in 64 bits (a negative, fractional or non-numeric count).
        case badCount(line: Int, count: String)
        /// A count but no frames before it (only spaces or `;`).
        case noFrames(line: Int)
        /// The counts so far add up to more than 2^64 - 1.
        case totalOverflow(line: Int)
        /// More than ``FoldedStacks/maxDepth`` frames on one line.
        case tooDeep(line: Int, limit: Int)

        public var line: Int {
            switch self {
            case .missingCount(let l), .badCount(let l, _), .noFrames(let l), .totalOverflow(let l), .tooDeep(let l, _): return l
            }
        }

        public var description: String {
            switch self {
            case .missingCount(let l):
                return "folded stacks line \(l): expected `frame;frame;... COUNT`"
            case .badCount(let l, let c):
                return "folded stacks line \(l): the count `\(c)` is not a whole number of samples (0 or more)"
            case .noFrames(let l):
                return "folded stacks line \(l): a count but no frames before it"
            case .totalOverflow(let l):
                return "folded stacks line \(l): the counts add up to more than \(UInt64.max)"
            case .tooDeep(let l, let limit):
                return "folded stacks line \(l): more than \(limit) frames in one stack; "
                    + "no profiler records stacks that deep (a damaged file, or frames not separated by `;`?)"
            }
        }
    }

    /// Parses folded text; blank lines are skipped, `\r\n` line ends accepted.
    public init(parsing text: String) throws(ParseError) {
        var text = text
        // withUTF8 is free on native strings; an error escapes the closure as a value.
        let failure: ParseError? = text.withUTF8 { buffer in
            do throws(ParseError) { try self.parse(UnsafeRawBufferPointer(buffer)) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    /// Parses folded text given as UTF-8 bytes (a file read whole), without
    /// first making a `String` of it. Invalid UTF-8 in names is kept as is and
    /// repaired (U+FFFD) only where a name is shown.
    public init(parsingUTF8 bytes: some Collection<UInt8>) throws(ParseError) {
        let parse = { (buffer: UnsafeRawBufferPointer, stacks: inout FoldedStacks) -> ParseError? in
            do throws(ParseError) { try stacks.parse(buffer) } catch { return error }
            return nil
        }
        var failure: ParseError?? = bytes.withContiguousStorageIfAvailable { parse(UnsafeRawBufferPointer($0), &self) }
        if failure == nil {
            // Not contiguous (a lazy collection, a list): one copy.
            failure = Array(bytes).withUnsafeBytes { parse($0, &self) }
        }
        if case .some(.some(let e)) = failure { throw e }
    }

    /// Adds `count` samples of `stack` (root first). Empty names are skipped,
    /// as the parser skips empty `;;` segments. Samples that would take
    /// ``total`` past 2^64 - 1 are left out and counted in ``clampedSamples``.
    public mutating func add(_ stack: [String], count: UInt64 = 1) {
        let count = clamp(count)
        var node: Int32 = 0
        for frame in stack {
            var frame = frame
            let name: Int32? = frame.withUTF8 { b in
                b.isEmpty ? nil : frames.intern(UnsafeRawBufferPointer(b))
            }
            if let name { node = tree.child(of: node, name: name) }
        }
        tree.end(node, count: count)
    }

    /// Adds every stack of `other`.
    public mutating func merge(_ other: FoldedStacks) {
        // Map other's names to ours once, then copy its tree top-down (parents
        // are always created before their children, so index order is enough).
        var nameMap = [Int32](repeating: 0, count: other.frames.count)
        for i in 0..<other.frames.count {
            nameMap[i] = other.frames.withName(Int32(i)) { frames.intern($0) }
        }
        var nodeMap = [Int32](repeating: 0, count: other.tree.count)
        for i in 1..<max(other.tree.count, 1) {
            let n = other.tree[i]
            nodeMap[i] = tree.child(of: nodeMap[Int(n.parent)], name: nameMap[Int(n.name)])
        }
        clampedSamples = clampedSamples.addingReportingOverflow(other.clampedSamples).overflow
            ? .max : clampedSamples + other.clampedSamples
        for (node, count) in other.tree.ends {
            tree.end(nodeMap[Int(node)], count: clamp(count))
        }
    }

    /// `count`, or what is left below 2^64 - 1 of it (the rest counted in
    /// ``clampedSamples``, which saturates), added to ``total``.
    private mutating func clamp(_ count: UInt64) -> UInt64 {
        let kept = min(count, UInt64.max - total)
        let (clamped, overflow) = clampedSamples.addingReportingOverflow(count - kept)
        clampedSamples = overflow ? .max : clamped
        total += kept
        return kept
    }

    /// Stacks root first, with their counts; duplicates merged. Built on
    /// each call from the tree.
    public var counts: [[String]: UInt64] {
        var names: [String] = []
        names.reserveCapacity(frames.count)
        for i in 0..<frames.count { names.append(frames.string(Int32(i))) }
        var result: [[String]: UInt64] = [:]
        for (node, count) in tree.ends {
            var stack: [String] = []
            var n = node
            while n > 0 {
                stack.append(names[Int(tree[Int(n)].name)])
                n = tree[Int(n)].parent
            }
            result[stack.reversed(), default: 0] += count
        }
        return result
    }

    /// Folded text, lines sorted so output is deterministic.
    public func rendered() -> String {
        counts.map { ($0.key.joined(separator: ";"), $0.value) }
            .sorted { $0.0 < $1.0 }
            .map { "\($0.0) \($0.1)\n" }
            .joined()
    }

    /// The number of distinct stacks.
    public var stackCount: Int { tree.ends.count }

    /// The number of distinct frame names.
    public var nameCount: Int { frames.count }
}

extension FoldedStacks: Equatable {
    /// The same stacks with the same counts, whatever order they were added in.
    public static func == (lhs: FoldedStacks, rhs: FoldedStacks) -> Bool {
        lhs.total == rhs.total && lhs.counts == rhs.counts
    }
}

// MARK: - Parsing

private let newline = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")
private let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), semicolon = UInt8(ascii: ";")

/// 0x80 in each byte of `w` equal to `byte`, 0 elsewhere: exact (no false
/// positives from borrows, unlike the shorter `(x - 0x01…) & ~x` test), so
/// every set bit can be used, lowest first. Bit Twiddling Hacks, "Determine
/// if a word has a byte equal to n".
@inline(__always)
private func bytesEqualTo(_ byte: UInt8, in w: UInt64) -> UInt64 {
    let x = w ^ (0x0101_0101_0101_0101 &* UInt64(byte))
    let y = (x & 0x7F7F_7F7F_7F7F_7F7F) &+ 0x7F7F_7F7F_7F7F_7F7F
    return ~(y | x | 0x7F7F_7F7F_7F7F_7F7F)
}

/// How many `;` and `\n` bytes, 8 at a time: an upper bound on the tree's
/// nodes, to size its array once instead of doubling it (copies and page
/// faults) all the way to the end.
private func separatorCount(_ base: UnsafePointer<UInt8>, _ end: Int) -> Int {
    var n = 0, i = 0
    let raw = UnsafeRawPointer(base)
    while i + 8 <= end {
        let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        n += (bytesEqualTo(semicolon, in: w) | bytesEqualTo(newline, in: w)).nonzeroBitCount
        i += 8
    }
    while i < end { if base[i] == semicolon || base[i] == newline { n += 1 }; i += 1 }
    return n
}

extension FoldedStacks {
    /// One pass over the bytes. Folded files are usually sorted, so
    /// consecutive lines share a prefix of frames: the previous line's frame
    /// boundaries and tree nodes are kept, and the shared prefix is found with
    /// a byte comparison instead of interning its frames again.
    mutating func parse(_ text: UnsafeRawBufferPointer) throws(ParseError) {
        guard let base = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let raw = UnsafeRawPointer(base)
        let end = text.count
        if tree.count == 1 { tree.reserveCapacity(min(separatorCount(base, end) + 2, Int(Int32.max))) }
        var lineNumber = 0
        var pos = 0
        // The previous line's frames: `prevEnds[k]` is the end (relative to the
        // line start) of its k-th non-empty frame, `prevNodes[k]` its node.
        var prevStart = 0, prevLength = 0
        var prevEnds: [Int] = [], prevNodes: [Int32] = []
        prevEnds.reserveCapacity(256); prevNodes.reserveCapacity(256)
        // This line's `;` positions, found with its end in one pass.
        var semis: [Int] = []
        semis.reserveCapacity(256)
        while pos < end {
            lineNumber += 1
            semis.removeAll(keepingCapacity: true)
            var lineEnd = end
            var p = pos
            scan: while p + 8 <= end {
                var m = bytesEqualTo(semicolon, in: raw.loadUnaligned(fromByteOffset: p, as: UInt64.self))
                let nl = bytesEqualTo(newline, in: raw.loadUnaligned(fromByteOffset: p, as: UInt64.self))
                if nl != 0 {
                    let at = nl.trailingZeroBitCount >> 3
                    m &= (UInt64(1) << (at << 3)) &- 1
                    while m != 0 { semis.append(p + m.trailingZeroBitCount >> 3); m &= m &- 1 }
                    lineEnd = p + at
                    break scan
                }
                while m != 0 { semis.append(p + m.trailingZeroBitCount >> 3); m &= m &- 1 }
                p += 8
            }
            if lineEnd == end {
                while p < end {
                    if base[p] == newline { lineEnd = p; break }
                    if base[p] == semicolon { semis.append(p) }
                    p += 1
                }
            }
            let next = lineEnd + 1
            // Trim: leading blanks, trailing blanks and \r.
            var s = pos, e = lineEnd
            while s < e && (base[s] == space || base[s] == tab) { s += 1 }
            while e > s && (base[e - 1] == space || base[e - 1] == tab || base[e - 1] == carriageReturn) { e -= 1 }
            pos = next
            if s == e { continue }
            // The count: after the last blank.
            var sep = e - 1
            while sep > s && base[sep] != space && base[sep] != tab { sep -= 1 }
            if sep == s { throw .missingCount(line: lineNumber) }
            var count: UInt64 = 0
            var bad = false
            for i in (sep + 1)..<e {
                let d = base[i] &- UInt8(ascii: "0")
                if d > 9 { bad = true; break }
                let (m, o1) = count.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(d))
                if o1 || o2 { bad = true; break }
                count = a
            }
            if bad {
                let token = String(decoding: UnsafeBufferPointer(start: base + sep + 1, count: e - sep - 1), as: UTF8.self)
                throw .badCount(line: lineNumber, count: token)
            }
            var fe = sep
            while fe > s && (base[fe - 1] == space || base[fe - 1] == tab) { fe -= 1 }
            // Frames are base[s..<fe]. Shared prefix with the previous line:
            let length = fe - s
            var common = 0
            let limit = min(length, prevLength)
            while common + 8 <= limit
                    && raw.loadUnaligned(fromByteOffset: s + common, as: UInt64.self)
                       == raw.loadUnaligned(fromByteOffset: prevStart + common, as: UInt64.self) {
                common += 8
            }
            while common < limit && base[s + common] == base[prevStart + common] { common += 1 }
            // Keep the previous frames that end inside the common bytes at a
            // boundary this line also has (a `;` or its end).
            var kept = 0
            while kept < prevEnds.count {
                let fEnd = prevEnds[kept]
                if fEnd > common { break }
                if fEnd < common || fEnd == length || base[s + fEnd] == semicolon { kept += 1 } else { break }
            }
            prevEnds.removeSubrange(kept...)
            prevNodes.removeSubrange(kept...)
            var node: Int32 = kept > 0 ? prevNodes[kept - 1] : 0
            var i = kept > 0 ? prevEnds[kept - 1] : 0
            var k = 0
            while k < semis.count && semis[k] - s < i { k += 1 }
            var fresh = false
            while i < length {
                var j = length
                if k < semis.count && semis[k] - s < length { j = semis[k] - s; k += 1 }
                // A frame of only blanks is no frame, like an empty one: no
                // name to show, and written out it would merge into the
                // separator (`a; ;b` is `a;b`; `; ; 3` has no frames).
                if j > i && !Self.isBlank(base + s + i, j - i) {
                    let name = frames.intern(UnsafeRawBufferPointer(start: base + s + i, count: j - i))
                    // Once this line has made a node, everything after it is new too.
                    if fresh {
                        node = tree.appendChild(of: node, name: name)
                    } else if let existing = tree.findChild(of: node, name: name) {
                        node = existing
                    } else {
                        node = tree.appendChild(of: node, name: name)
                        fresh = true
                    }
                    prevEnds.append(j); prevNodes.append(node)
                    if prevEnds.count > Self.maxDepth { throw .tooDeep(line: lineNumber, limit: Self.maxDepth) }
                }
                i = j + 1
            }
            if node == 0 { throw .noFrames(line: lineNumber) }
            let (t, overflow) = total.addingReportingOverflow(count)
            if overflow { throw .totalOverflow(line: lineNumber) }
            total = t
            tree.end(node, count: count)
            prevStart = s; prevLength = length
        }
    }
}

extension FoldedStacks {
    /// Only spaces and tabs (a frame's first byte is rarely one: one compare).
    @inline(__always)
    static func isBlank(_ p: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        var i = 0
        while i < n && (p[i] == space || p[i] == tab) { i += 1 }
        return i == n
    }
}

// MARK: - Storage

/// Interned frame names: each distinct name's bytes once, in one arena,
/// found again through an open-addressing table (linear probing, at most
/// half full so probes stay short).
struct FrameTable: Sendable {
    private(set) var bytes: [UInt8] = []
    /// Name `i` is `bytes[offsets[i] ..< offsets[i + 1]]`.
    private(set) var offsets: [Int] = [0]
    private var hashes: [UInt64] = []
    private var slots = [Int32](repeating: -1, count: 1 << 10)

    var count: Int { hashes.count }

    /// The id of `name`, adding it if new.
    @inline(__always)
    mutating func intern(_ name: UnsafeRawBufferPointer) -> Int32 {
        let h = hashBytes(name)
        let (found, slot) = probe(name, h)
        if found >= 0 { return found }
        let id = Int32(hashes.count)
        hashes.append(h)
        bytes.append(contentsOf: name)
        offsets.append(bytes.count)
        slots[slot] = id
        if hashes.count * 2 > slots.count { grow() }
        return id
    }

    /// The id of `name` if it was interned.
    func find(_ name: UnsafeRawBufferPointer) -> Int32? {
        let id = probe(name, hashBytes(name)).id
        return id >= 0 ? id : nil
    }

    /// Where `name` is in the table, or the empty slot where it would go (id -1).
    @inline(__always)
    private func probe(_ name: UnsafeRawBufferPointer, _ h: UInt64) -> (id: Int32, slot: Int) {
        slots.withUnsafeBufferPointer { slots in
            hashes.withUnsafeBufferPointer { hashes in
                offsets.withUnsafeBufferPointer { offsets in
                    bytes.withUnsafeBytes { bytes in
                        let mask = slots.count - 1
                        var slot = Int(truncatingIfNeeded: h) & mask
                        while true {
                            let id = slots[slot]
                            if id < 0 { return (-1, slot) }
                            if hashes[Int(id)] == h {
                                let start = offsets[Int(id)], n = name.count
                                if offsets[Int(id) + 1] - start == n
                                    && (n == 0 || bytesEqual(bytes.baseAddress! + start, name.baseAddress!, n)) {
                                    return (id, slot)
                                }
                            }
                            slot = (slot + 1) & mask
                        }
                    }
                }
            }
        }
    }

    func withName<R>(_ id: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = offsets[Int(id)], end = offsets[Int(id) + 1]
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
    }

    func string(_ id: Int32) -> String {
        withName(id) { String(decoding: $0, as: UTF8.self) }
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        let mask = slots.count - 1
        for (id, h) in hashes.enumerated() {
            var slot = Int(truncatingIfNeeded: h) & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(id)
        }
    }
}

/// The prefix tree of stacks: one array of small nodes, node 0 the root (no
/// name). A node's parent always has a smaller index, so one backwards pass
/// sums counts up the tree.
///
/// Children are found two ways. Each node keeps a list of its children
/// (`firstChild`, `nextSibling`), searched while it is short. A parent with
/// more than `listLimit` children (a dispatcher, the root of a system-wide
/// profile) has them indexed in a hash table instead, so no search is ever
/// longer than `listLimit` steps. Below the point where a line leaves the
/// previous one, the parser needs no search at all (`appendChild`): a node
/// made for this line has no children yet. So building the tree from sorted
/// input is mostly appending to one array.
struct StackTree: Sendable {
    /// 24 bytes. Most nodes end no stack (one in twenty in a typical large
    /// profile), so their counts live in `ends`.
    struct Node: Sendable {
        var parent: Int32
        var name: Int32
        /// The most recent child, and the child added before this one to the same parent (-1: none).
        var firstChild: Int32 = -1
        var nextSibling: Int32
        var childCount: UInt32 = 0
        /// Index into `ends` if a stack ends here (also with a count of 0,
        /// so `counts` round-trips), else -1.
        var end: Int32 = -1
    }

    private(set) var nodes: [Node] = [Node(parent: -1, name: -1, nextSibling: -1)]
    /// The stacks: the node each ends at and its samples.
    private(set) var ends: [(node: Int32, count: UInt64)] = []
    /// Past this many children a parent's are indexed. Eight keeps a list
    /// walk to a few cache lines; the index costs a table slot per child,
    /// paid only by the few wide parents.
    static let listLimit: UInt32 = 8
    /// (parent, name) -> child for parents with more than `listLimit`
    /// children; open addressing, at most half full.
    private var keys = [UInt64](repeating: StackTree.emptyKey, count: 1 << 10)
    private var values = [Int32](repeating: 0, count: 1 << 10)
    private var indexed = 0
    private static let emptyKey = UInt64.max

    var count: Int { nodes.count }

    subscript(_ i: Int) -> Node { nodes[i] }

    mutating func reserveCapacity(_ n: Int) { nodes.reserveCapacity(n) }

    @inline(__always) private static func key(_ parent: Int32, _ name: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: parent)) << 32 | UInt64(UInt32(bitPattern: name))
    }

    @inline(__always) private static func slot(_ key: UInt64, _ shift: Int) -> Int {
        // Fibonacci hashing: the top bits of key * 2^64/φ.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> UInt64(shift))
    }

    private var shift: Int { 64 - keys.count.trailingZeroBitCount }

    /// The child of `parent` named `name`, created if missing.
    @inline(__always)
    mutating func child(of parent: Int32, name: Int32) -> Int32 {
        if let c = findChild(of: parent, name: name) { return c }
        return appendChild(of: parent, name: name)
    }

    func findChild(of parent: Int32, name: Int32) -> Int32? {
        nodes.withUnsafeBufferPointer { nodes in
            if nodes[Int(parent)].childCount > Self.listLimit {
                let k = Self.key(parent, name)
                let mask = keys.count - 1
                var slot = Self.slot(k, shift)
                while true {
                    let stored = keys[slot]
                    if stored == k { return values[slot] }
                    if stored == Self.emptyKey { return nil }
                    slot = (slot + 1) & mask
                }
            }
            var c = nodes[Int(parent)].firstChild
            while c >= 0 {
                if nodes[Int(c)].name == name { return c }
                c = nodes[Int(c)].nextSibling
            }
            return nil
        }
    }

    /// A new child of `parent`; the caller knows there is none named `name`.
    @inline(__always)
    mutating func appendChild(of parent: Int32, name: Int32) -> Int32 {
        let node = Int32(nodes.count)
        let p = Int(parent)
        nodes.append(Node(parent: parent, name: name, nextSibling: nodes[p].firstChild))
        let children = nodes.withUnsafeMutableBufferPointer { nodes in
            nodes[p].firstChild = node
            nodes[p].childCount += 1
            return nodes[p].childCount
        }
        if children > Self.listLimit {
            if children == Self.listLimit + 1 {
                var c = node
                while c >= 0 { index(c); c = nodes[Int(c)].nextSibling }
            } else {
                index(node)
            }
        }
        return node
    }

    mutating func end(_ node: Int32, count: UInt64) {
        let e = nodes[Int(node)].end
        if e >= 0 {
            ends[Int(e)].count += count
        } else {
            nodes[Int(node)].end = Int32(ends.count)
            ends.append((node, count))
        }
    }

    /// Samples whose stack ends at `node`.
    func selfCount(_ node: Int) -> UInt64 {
        let e = nodes[node].end
        return e >= 0 ? ends[Int(e)].count : 0
    }

    func isEnd(_ node: Int) -> Bool { nodes[node].end >= 0 }

    private mutating func index(_ node: Int32) {
        indexed += 1
        if indexed * 2 > keys.count { grow() }
        insert(Self.key(nodes[Int(node)].parent, nodes[Int(node)].name), node)
    }

    private mutating func insert(_ k: UInt64, _ node: Int32) {
        let mask = keys.count - 1
        var slot = Self.slot(k, shift)
        while keys[slot] != Self.emptyKey { slot = (slot + 1) & mask }
        keys[slot] = k
        values[slot] = node
    }

    private mutating func grow() {
        let old = keys, oldValues = values
        keys = [UInt64](repeating: Self.emptyKey, count: old.count * 2)
        values = [Int32](repeating: 0, count: old.count * 2)
        for (k, v) in zip(old, oldValues) where k != Self.emptyKey { insert(k, v) }
    }
}

/// A 64-bit hash of bytes, a word at a time (multiply-xorshift per word, a
/// final avalanche from SplitMix64). Only for the intern tables, so any
/// decent mixing will do, but it runs once per frame of input, so no byte
/// loops: a tail is read as one word overlapping the last full one, short
/// names as two overlapping halves (the length, mixed in first, tells the
/// cases apart).
@inline(__always)
func hashBytes(_ p: UnsafeRawBufferPointer) -> UInt64 {
    let n = p.count
    guard let b = p.baseAddress else { return 0x243F_6A88_85A3_08D3 }
    var h: UInt64 = 0x243F_6A88_85A3_08D3 ^ UInt64(n)
    @inline(__always) func mix(_ w: UInt64) { h = (h ^ w) &* 0x9E37_79B9_7F4A_7C15; h ^= h >> 29 }
    if n >= 8 {
        var i = 0
        while i + 8 <= n { mix(b.loadUnaligned(fromByteOffset: i, as: UInt64.self)); i += 8 }
        if i < n { mix(b.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)) }
    } else if n >= 4 {
        mix(UInt64(b.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            | UInt64(b.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)) << 32)
    } else if n > 0 {
        mix(UInt64(b.load(fromByteOffset: 0, as: UInt8.self)) | UInt64(b.load(fromByteOffset: n / 2, as: UInt8.self)) << 8
            | UInt64(b.load(fromByteOffset: n - 1, as: UInt8.self)) << 16)
    }
    h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
    h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
    return h ^ (h >> 31)
}

/// `n` bytes at `a` and `b` equal, compared a word at a time (the tail as an
/// overlapping word).
@inline(__always)
func bytesEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    if n >= 8 {
        var i = 0
        while i + 8 <= n {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        return i == n || a.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) == b.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
    }
    if n >= 4 {
        return a.loadUnaligned(fromByteOffset: 0, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            && a.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) == b.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
    }
    var i = 0
    while i < n {
        if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
        i += 1
    }
    return true
}

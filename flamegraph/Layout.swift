/// Where each frame goes. The frames drawn are the tree nodes at least
/// `minWidth` pixels wide; because a node is never wider than its parent,
/// they form a subtree, and everything below the threshold is cut with it.
/// Positions are in samples (x from the left edge, width = the node's
/// inclusive count), depths in rows from the root.
///
/// Cost: one backwards pass over all nodes for inclusive counts, one
/// forward pass to pick the drawn nodes; everything after that is
/// proportional to the drawn frames only (a few hundred thousand at most at
/// the default 0.1 px, whatever the input size).
struct FrameLayout {
    /// Tree node of each drawn frame, ascending; `nodes[0]` is the root.
    var nodes: [Int32] = []
    /// Index into `nodes` of each frame's parent (-1 for the root).
    var parent: [Int32] = []
    /// Inclusive samples of each drawn frame.
    var width: [UInt64] = []
    /// Samples left of the frame.
    var x: [UInt64] = []
    var depth: [Int32] = []
    var maxDepth: Int32 = 0
    /// Name id (in the profile's FrameTable) → its index among `names`.
    var nameIndex: [Int32: Int32] = [:]
    /// The distinct names drawn, sorted bytewise; index = rank.
    var names: [Int32] = []
    /// Each frame's name rank (-1 for the root).
    var rank: [Int32] = []
    /// Drawn children of each frame, in name order: `children[childStart[i] ..< childStart[i + 1]]`.
    var childStart: [Int32] = []
    var children: [Int32] = []

    var count: Int { nodes.count }

    /// Inclusive counts: a node's own samples plus its descendants'.
    static func inclusive(_ tree: StackTree) -> [UInt64] {
        var totals = [UInt64](repeating: 0, count: tree.count)
        for (node, count) in tree.ends { totals[Int(node)] = count }
        totals.withUnsafeMutableBufferPointer { t in
            tree.nodes.withUnsafeBufferPointer { nodes in
                var i = t.count - 1
                // Children have larger indices than their parents: one pass.
                while i > 0 { t[Int(nodes[i].parent)] &+= t[i]; i -= 1 }
            }
        }
        return totals
    }

    /// Lays out the nodes of `tree` at least `minSamples` wide (and above 0).
    init(tree: StackTree, frames: FrameTable, totals: [UInt64], minSamples: Double) {
        // 1. The drawn nodes, ascending (so parents come before children).
        nodes.append(0)
        totals.withUnsafeBufferPointer { t in
            for i in 1..<t.count where t[i] > 0 && Double(t[i]) >= minSamples {
                nodes.append(Int32(i))
            }
        }
        let n = nodes.count
        // 2. Parents as indices into `nodes` (binary search: ascending, and a
        //    drawn node's parent is drawn, being at least as wide).
        parent = [Int32](repeating: -1, count: n)
        width = [UInt64](repeating: 0, count: n)
        depth = [Int32](repeating: 0, count: n)
        rank = [Int32](repeating: -1, count: n)
        for i in 0..<n {
            let node = Int(nodes[i])
            width[i] = totals[node]
            if i == 0 { continue }
            let p = Self.search(nodes, tree[node].parent)
            parent[i] = Int32(p)
            depth[i] = depth[p] + 1
            if depth[i] > maxDepth { maxDepth = depth[i] }
        }
        // 3. Name ranks: the distinct drawn names sorted by their bytes, so
        //    siblings sort alphabetically as flamegraph.pl orders them.
        for i in 1..<max(n, 1) {
            let id = tree[Int(nodes[i])].name
            if nameIndex[id] == nil { nameIndex[id] = 0; names.append(id) }
        }
        frames.bytes.withUnsafeBytes { arena in
            let offsets = frames.offsets
            names.sort { a, b in
                let sa = offsets[Int(a)], la = offsets[Int(a) + 1] - sa
                let sb = offsets[Int(b)], lb = offsets[Int(b) + 1] - sb
                return Self.less(arena.baseAddress! + sa, la, arena.baseAddress! + sb, lb)
            }
        }
        for (r, id) in names.enumerated() { nameIndex[id] = Int32(r) }
        for i in 1..<max(n, 1) { rank[i] = nameIndex[tree[Int(nodes[i])].name]! }
        // 4. Children lists (counting sort by parent), each sorted by name.
        childStart = [Int32](repeating: 0, count: n + 1)
        for i in 1..<max(n, 1) { childStart[Int(parent[i]) + 1] += 1 }
        for i in 0..<n { childStart[i + 1] += childStart[i] }
        children = [Int32](repeating: 0, count: max(n - 1, 0))
        var fill = Array(childStart[0..<n])
        for i in 1..<max(n, 1) {
            let p = Int(parent[i])
            children[Int(fill[p])] = Int32(i)
            fill[p] += 1
        }
        let rank = self.rank
        for i in 0..<n where childStart[i + 1] - childStart[i] > 1 {
            children[Int(childStart[i])..<Int(childStart[i + 1])].sort { rank[Int($0)] < rank[Int($1)] }
        }
        // 5. x: children side by side from their parent's left edge; what is
        //    not drawn (the parent's own samples, children too narrow to
        //    draw) is the gap on the right.
        x = [UInt64](repeating: 0, count: n)
        for i in 0..<n {
            var offset = x[i]
            for c in childStart[i]..<childStart[i + 1] {
                let child = Int(children[Int(c)])
                x[child] = offset
                offset += width[child]
            }
        }
    }

    /// Pre-order, children in name order: the order frames are written.
    func forEachPreOrder(_ body: (Int) -> Void) {
        var stack: [Int32] = [0]
        stack.reserveCapacity(Int(maxDepth) + 64)
        while let i = stack.popLast() {
            body(Int(i))
            var c = childStart[Int(i) + 1]
            while c > childStart[Int(i)] { c -= 1; stack.append(children[Int(c)]) }
        }
    }

    private static func search(_ sorted: [Int32], _ value: Int32) -> Int {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Bytewise order (for UTF-8, the order of code points).
    private static func less(_ a: UnsafeRawPointer, _ la: Int, _ b: UnsafeRawPointer, _ lb: Int) -> Bool {
        let n = min(la, lb)
        var i = 0
        while i < n {
            let x = a.load(fromByteOffset: i, as: UInt8.self), y = b.load(fromByteOffset: i, as: UInt8.self)
            if x != y { return x < y }
            i += 1
        }
        return la < lb
    }
}

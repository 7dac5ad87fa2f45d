/// Brendan Gregg's folded-stack format: one line per distinct stack,
/// `root;caller;leaf COUNT`, frames separated by `;`, the count after the last
/// space (stackcollapse-*.pl output, read by flamegraph.pl).
public struct FoldedStacks: Sendable, Equatable {
    /// Stacks root first, with their counts; duplicates merged.
    public private(set) var counts: [[String]: UInt64] = [:]

    public init() {}

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingCount(line: Int)
        public var description: String {
            switch self {
            case .missingCount(let l): return "folded stacks line \(l): expected `frame;frame;... COUNT`"
            }
        }
    }

    /// Parses folded text; blank lines are skipped.
    public init(parsing text: String) throws(ParseError) {
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.drop { $0 == " " }
            if trimmed.isEmpty { continue }
            guard let space = trimmed.lastIndex(of: " "), let n = UInt64(trimmed[trimmed.index(after: space)...]) else {
                throw .missingCount(line: i + 1)
            }
            add(trimmed[..<space].split(separator: ";").map(String.init), count: n)
        }
    }

    public mutating func add(_ stack: [String], count: UInt64 = 1) {
        counts[stack, default: 0] += count
    }

    public var total: UInt64 { counts.values.reduce(0, +) }

    /// Folded text, lines sorted so output is deterministic.
    public func rendered() -> String {
        counts.map { ($0.key.joined(separator: ";"), $0.value) }
            .sorted { $0.0 < $1.0 }
            .map { "\($0.0) \($0.1)\n" }
            .joined()
    }
}

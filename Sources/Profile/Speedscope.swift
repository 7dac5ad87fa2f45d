import Foundation

extension Profile {
    /// The profile in speedscope's file format (https://www.speedscope.app,
    /// "file-format-schema.json"): one "sampled" profile whose samples are
    /// the folded stacks (root first, frames as in folded output, the process
    /// name first) with their values as weights.
    public func speedscope(name: String, valueIndex: Int = 0, mangled: Bool = false,
                           filter: SampleFilter = SampleFilter()) throws(ProfileError) -> [UInt8] {
        struct Frame: Encodable { var name: String }
        struct Shared: Encodable { var frames: [Frame] }
        struct Sampled: Encodable {
            var type = "sampled"
            var name: String
            var unit: String
            var startValue: Int64
            var endValue: Int64
            var samples: [[Int]]
            var weights: [Int64]
        }
        struct File: Encodable {
            var schema = "https://www.speedscope.app/file-format-schema.json"
            var shared: Shared
            var profiles: [Sampled]
            var name: String
            var exporter = "sprof"
            enum CodingKeys: String, CodingKey {
                case schema = "$schema", shared, profiles, name, exporter
            }
        }
        var frames: [Frame] = []
        var index: [String: Int] = [:]
        var samples: [[Int]] = []
        var weights: [Int64] = []
        for (stack, v) in foldedStacks(valueIndex: valueIndex, mangled: mangled, filter: filter).sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            samples.append(stack.map { f in
                if let i = index[f] { return i }
                index[f] = frames.count
                frames.append(Frame(name: f))
                return frames.count - 1
            })
            weights.append(v)
        }
        let unit = valueIndex < sampleTypes.count && sampleTypes[valueIndex].unit == "nanoseconds" ? "nanoseconds" : "none"
        let total = weights.reduce(Int64(0)) { $0.saturatingAdd($1) }
        let file = File(shared: Shared(frames: frames),
                        profiles: [Sampled(name: name, unit: unit, startValue: 0, endValue: total, samples: samples, weights: weights)],
                        name: name)
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return [UInt8](try encoder.encode(file))
        } catch {
            throw .compression("speedscope encoding failed: \(error)")
        }
    }
}

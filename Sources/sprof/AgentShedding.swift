import SprofProfile
import SprofAgent
import SprofCapture
import SprofUnwind
import Synchronization

/// Bounds the `thread_name` label of an agent window. A process that starts
/// threads without end, each with a name of its own (a pool that numbers
/// its threads, `pool-1-thread-48213`, or a hostile one), would otherwise
/// give every window, every store query and every ClickHouse part one
/// label value per thread. Per process and window, the names with the most
/// samples are kept, up to `perProcess`; the samples of the rest are
/// labelled ``other`` and counted (`sprof_agent_shed_total{kind="thread_names"}`).
/// Their stacks, and every other label, stay as they were.
enum ThreadNameFold {
    /// 64 names per process and window: more worker threads than that are
    /// told apart by their stacks, not their names, and 64 keeps a 10 s
    /// window of a thousand processes under 64,000 values at worst.
    static let perProcess = 64
    /// What the folded samples are labelled: not a name a thread can set
    /// (`prctl(PR_SET_NAME)` allows 15 bytes, this is 16).
    static let other = "(other threads)"

    /// Folds `profile`'s thread names in place; returns how many samples
    /// were relabelled.
    @discardableResult
    static func apply(_ profile: inout Profile, perProcess: Int = perProcess) -> Int {
        struct Key: Hashable { var pid: Int64; var name: String }
        var counts: [Key: Int64] = [:]
        var namesPerPid: [Int64: Int] = [:]
        for s in profile.samples {
            guard let name = s.label("thread_name")?.string else { continue }
            let key = Key(pid: s.label("pid")?.number ?? -1, name: name)
            if counts[key] == nil { namesPerPid[key.pid, default: 0] += 1 }
            counts[key, default: 0] += s.values.first ?? 1
        }
        let crowded = Set(namesPerPid.filter { $0.value > perProcess }.keys)
        guard !crowded.isEmpty else { return 0 }
        // The most sampled names of each crowded process (ties by name: the same input keeps the same names).
        var kept: Set<Key> = []
        let byPid = Dictionary(grouping: counts.filter { crowded.contains($0.key.pid) }, by: { $0.key.pid })
        for (_, entries) in byPid {
            let top = entries.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.name < $1.key.name }.prefix(perProcess)
            for e in top { kept.insert(e.key) }
        }
        var folded = 0
        for i in profile.samples.indices {
            let s = profile.samples[i]
            let pid = s.label("pid")?.number ?? -1
            guard crowded.contains(pid), let j = s.labels.firstIndex(where: { $0.key == "thread_name" }),
                  let name = s.labels[j].string, !kept.contains(Key(pid: pid, name: name)) else { continue }
            profile.samples[i].labels[j] = Profile.Label(key: "thread_name", string: other)
            folded += 1
        }
        return folded
    }
}

/// Carries the process table's and the unwind cache's shed counters to the
/// agent's metrics, and says each new kind of shedding once in the log.
/// The process table is the recorder's and starts over at each reload
/// (SIGHUP): its counters are summed across runs here.
final class ShedNotes: @unchecked Sendable {
    private let state = Mutex<(last: ProcessTableStatistics, mappings: UInt64, oversized: UInt64, saidModules: Set<String>)>(
        (ProcessTableStatistics(), 0, 0, []))

    /// Once a second from the recorder's control callback.
    func note(_ table: ProcessTableStatistics, cache: ModuleCache, metrics: Metrics) {
        let shedModules = cache.statistics.shedModules > 0 ? cache.shedFailures : []
        let (mappings, say) = state.withLock { s -> (UInt64, [String]) in
            // A new run's table counts from 0 again.
            let restarted = table.shedMappings < s.last.shedMappings || table.oversizedReads < s.last.oversizedReads
            let base = restarted ? ProcessTableStatistics() : s.last
            var say: [String] = []
            if table.oversizedReads > base.oversizedReads && s.oversized == 0 {
                say.append("a process has more mappings than the \(ProcessTable.defaultMaxMappingsPerProcess) kept per process: "
                           + "the rest are not kept (its executable's and libraries' are), see sprof_agent_shed_total{kind=\"mappings\"}")
            }
            s.mappings += table.shedMappings - base.shedMappings
            s.oversized += table.oversizedReads - base.oversizedReads
            s.last = table
            for m in shedModules where s.saidModules.insert(m).inserted && s.saidModules.count <= 100 { say.append(m) }
            return (s.mappings, say)
        }
        metrics.set("sprof_agent_shed_total", Double(mappings), labels: ["kind": "mappings"])
        let c = cache.statistics
        metrics.set("sprof_agent_shed_total", Double(c.shedModules), labels: ["kind": "unwind_tables"])
        metrics.set("sprof_agent_shed_total", Double(c.shedSamples), labels: ["kind": "unwind_samples"])
        for line in say { agentLog("shed: \(line)") }
    }
}

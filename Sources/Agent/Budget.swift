#if canImport(Glibc)
import Glibc
#endif

/// The agent's own cost, read from the kernel's accounting of it.
public struct SelfUsage: Equatable, Sendable {
    /// User + system CPU seconds since the process started.
    public var cpuSeconds: Double
    /// Resident set size, bytes.
    public var rssBytes: Int

    /// This process now: `/proc/self/stat` fields 14 and 15 (utime, stime,
    /// in clock ticks; proc(5)) and `/proc/self/status` `VmRSS` (kB).
    public static func current() -> SelfUsage? {
        guard let stat = readSmallFile("/proc/self/stat"), let status = readSmallFile("/proc/self/status") else { return nil }
        // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime is field 14, stime 15.
        guard fields.count > 12, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var rss = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            // "VmRSS:\t   12345 kB"
            rss = (Int(line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0) * 1024
        }
        return SelfUsage(cpuSeconds: (utime + stime) / ticks, rssBytes: rss)
    }
}

/// Keeps the agent under a CPU budget by choosing its sampling rate.
///
/// After each window the controller gets the agent's CPU seconds over the
/// window's wall seconds (`used`, in cores) and answers the rate for the next
/// window:
/// - over the budget: the rate is scaled by budget ÷ used (cost is roughly
///   proportional to the rate: each sample is unwound and counted), rounded
///   down, but at most halved per window, never below ``minimumHz``;
/// - under half the budget while below the configured rate: raised by a
///   quarter (at most to the configured rate), so a burst of load does not
///   keep the rate low for good, yet the rate does not swing back at once;
/// - otherwise unchanged.
///
/// ``throttled`` says whether the rate is below the configured one, for
/// `/metrics` and the log.
public struct RateController: Sendable {
    public let configuredHz: Int
    public let minimumHz: Int
    /// The budget in cores (0.01 = 1% of one core).
    public let budget: Double
    public private(set) var currentHz: Int

    public init(configuredHz: Int, budget: Double, minimumHz: Int = 1) {
        self.configuredHz = max(configuredHz, 1)
        self.minimumHz = max(1, min(minimumHz, configuredHz))
        self.budget = budget
        self.currentHz = self.configuredHz
    }

    public var throttled: Bool { currentHz < configuredHz }

    /// The rate for the next window, given the last window's use (cores).
    public mutating func next(used: Double) -> Int {
        guard budget > 0, used.isFinite, used >= 0 else { return currentHz }
        if used > budget {
            let scaled = Int((Double(currentHz) * budget / used).rounded(.down))
            // At most halved per window: one expensive window (a burst of new
            // binaries to read) must not send the rate to the floor at once.
            currentHz = max(minimumHz, min(currentHz - 1, max(scaled, currentHz / 2)))
        } else if used < budget / 2 && currentHz < configuredHz {
            currentHz = min(configuredHz, max(currentHz + 1, Int((Double(currentHz) * 1.25).rounded(.down))))
        }
        return currentHz
    }
}

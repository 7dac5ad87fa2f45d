import ArgumentParser
import Foundation
import SprofClickHouse
import SprofProfile

/// `sprof query`: the reports of `sprof report`, from the samples agents
/// wrote to ClickHouse. The samples are summed in SQL (per stack and the
/// labels kept), turned into a profile, and handed to Report's output code.
struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Reports from ClickHouse: the samples `sprof agent --clickhouse` wrote, summed over a time range.",
        discussion: """
            Reads the windows that START in [--since, --until) from sprof's tables (schema:
            Sources/ClickHouse/README.md), keeps samples matching every --where, sums them per stack
            and per label kept (--keep), and shows them with any output of `sprof report`:
              --top [--limit N]  --folded  --flamegraph [OUT]  --pprof OUT  --speedscope OUT
              --value samples|cpu|offcpu|waits|both  --focus REGEX  --pid/--tid/--comm  --title …
            Times: a duration before now (90s, 10m, 1h, 2d, 1h30m), an ISO 8601 time
            (2026-11-22T03:10:00Z), a UTC date (2026-11-22), unix seconds (1795000000 or @1795000000), or now.
            --where KEY=VALUE: host, pid, tid, comm, exe, thread_name, cgroup, container_id,
            systemd_unit, or a static label of the agent's config; repeat a key for alternatives.

            Examples:
              sprof query --clickhouse http://ch:8123 --since 1h --top
              sprof query --clickhouse http://ch:8123 --since 2026-11-22T03:00:00Z --until 2026-11-22T03:20:00Z --flamegraph
              sprof query --clickhouse http://ch:8123 --since 10m --where host=web-1 --where comm=nginx --folded
              sprof query --clickhouse 'http://reader:secret@ch:8123/?database=prof' --since 1d --pprof day.pb.gz
            """)

    @Option(name: .customLong("clickhouse"), help: ArgumentHelp("ClickHouse's HTTP interface: http[s]://[USER:PASSWORD@]HOST[:8123][/?database=DB].", valueName: "url"))
    var clickhouse: String

    @Option(help: ArgumentHelp("Windows from this time on.", valueName: "time"))
    var since = "1h"

    @Option(help: ArgumentHelp("Windows before this time (default: now).", valueName: "time"))
    var until: String?

    @Option(name: .customLong("where"), help: ArgumentHelp("Only samples with this label; repeat a key for alternatives.", valueName: "key=value"))
    var filters: [String] = []

    @Option(help: ArgumentHelp("Labels kept in the result, the rest summed over (comm always): a list of host, pid, tid, comm, exe, thread_name, cgroup, container_id, systemd_unit, labels (the static ones), or all. Default: all but tid.", valueName: "list"))
    var keep: String?

    @Option(help: "Seconds each statement may take.")
    var timeout: Double = 60

    @Argument(parsing: .allUnrecognized, help: "Output options of `sprof report` (see above).")
    var reportOptions: [String] = []

    func run() throws {
        let now = Date()
        var query: ClickHouseQuery
        let client: ClickHouseClient
        do {
            query = ClickHouseQuery(since: try ClickHouseQuery.parseTime(since, now: now, flag: "--since"),
                                    until: try until.map { try ClickHouseQuery.parseTime($0, now: now, flag: "--until") } ?? now)
            query.filters = try filters.map(ClickHouseQuery.parseFilter)
            if let keep { query.keep = try ClickHouseQuery.parseKeep(keep) }
            client = try ClickHouseClient(url: clickhouse, timeout: timeout)
        } catch { fail("\(error)") }
        let report: Report
        do { report = try Report.parse(reportOptions) } catch {
            fail("\(Report.message(for: error)) (sprof query takes the output options of `sprof report`: --top, --folded, --flamegraph [OUT], --pprof OUT, …)")
        }
        if report.file != defaultProfilePath { fail("sprof query reads ClickHouse, not a file: \(report.file) is not an option it knows") }
        let profile: Profile
        do { profile = try client.profile(query) } catch { fail("\(error)") }
        let iso = ISO8601DateFormatter()
        let range = "\(iso.string(from: query.since)) – \(iso.string(from: query.until))"
        if profile.samples.isEmpty {
            let filters = query.filters.isEmpty ? "" : " matching --where \(query.filters.map { "\($0.key)=\($0.value)" }.joined(separator: " --where "))"
            fail("no samples\(filters) in windows starting \(range) at \(client.displayURL)")
        }
        // The name stands for the profile in titles and messages; no '/' (a
        // flame graph's title is the name's last path component).
        try report.show(profile, name: "ClickHouse \(client.hostAndPort) \(client.database) \(range)")
    }
}

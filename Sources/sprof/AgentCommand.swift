import ArgumentParser
import Foundation
import SprofAgent
import SprofCapture
import SprofStore
#if canImport(Glibc)
import Glibc
#endif

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Profile every process continuously, at a cost nobody notices, and keep the history.",
        discussion: """
            Samples every CPU (19 Hz by default; --off-cpu adds where threads wait) and cuts the
            samples into windows (10 s). Each window is unwound and named while its processes live,
            labelled (host, pid, comm, exe, thread_name, cgroup, container_id, systemd_unit, and the
            config's static labels) and written to:
              - the local store (default /var/lib/sprof/store for root): one gzipped pprof a window,
                kept 7 days / 2 GiB; read it with  sprof report --store DIR --since 10m
              - ClickHouse with --clickhouse URL (spooled to disk while the server is down); read
                it with  sprof query --clickhouse URL --since 1h
              - Grafana Pyroscope with --pyroscope URL (/ingest, pprof).
            It serves /metrics (Prometheus), /healthz and a page with the flame graph of any time
            range and label filter on http://127.0.0.1:7070/ (loopback only unless
            --http-allow-remote).

            It keeps under a CPU budget (1% of one core): over it, it lowers the rate and says so in
            /metrics. SIGTERM or Ctrl-C writes the open window and stops; SIGHUP re-reads the
            configuration (the open window is written first).

            Once its programs are loaded and the page is bound, it keeps only the capabilities it
            still needs on every thread (cap_bpf and cap_perfmon to load again on SIGHUP,
            cap_sys_ptrace, cap_dac_read_search and cap_checkpoint_restore to read other processes'
            mappings and files, cap_syslog for kernel symbols), sets no_new_privs and says what it
            kept; --keep-root keeps everything.

            Configuration: TOML, --config FILE (default /etc/sprof/agent.toml when it exists);
            flags override it; --print-config shows the effective one. Example: docs/agent.toml;
            a systemd unit: docs/sprof-agent.service.

            Examples:
              sudo sprof agent
              sudo sprof agent --clickhouse http://ch.example:8123 --label env=prod
              sudo sprof agent --config /etc/sprof/agent.toml --print-config
            """)

    @Option(help: ArgumentHelp("TOML configuration file (default /etc/sprof/agent.toml when it exists).", valueName: "file"))
    var config: String?

    @Flag(help: "Print the effective configuration (file and flags) as TOML and exit.")
    var printConfig = false

    @Option(name: .customShort("F"), help: ArgumentHelp("Samples per second per CPU (default 19).", valueName: "hz"))
    var frequency: Int?

    @Option(help: ArgumentHelp("Window length, e.g. 10s or 1m (default 10s).", valueName: "duration"))
    var window: String?

    @Flag(inversion: .prefixedNo, help: "Also record where threads wait off the CPU.")
    var offCPU: Bool?

    @Option(name: .long, help: ArgumentHelp("Bytes of user stack copied per sample, 4k to 64k (default 16k).", valueName: "bytes"))
    var stackSize: String?

    @Option(help: ArgumentHelp("CPU budget: a share of one core, 1% or 0.01 (default 1%).", valueName: "share"))
    var cpuBudget: String?

    @Option(help: ArgumentHelp("The host label (default: this machine's name).", valueName: "name"))
    var host: String?

    @Option(help: ArgumentHelp("Directory of the local store.", valueName: "dir"))
    var store: String?

    @Flag(help: "Keep no local store (ClickHouse or Pyroscope only; the page needs the store).")
    var noStore = false

    @Option(help: ArgumentHelp("Remove windows older than this (default 7d).", valueName: "duration"))
    var storeMaxAge: String?

    @Option(help: ArgumentHelp("Keep the store under this size (default 2GiB).", valueName: "size"))
    var storeMaxSize: String?

    @Option(help: ArgumentHelp("Serve /metrics, /healthz and the page here (default 127.0.0.1:7070; off: none).", valueName: "host:port"))
    var http: String?

    @Flag(help: "Allow --http on an address other than loopback.")
    var httpAllowRemote = false

    @Option(help: ArgumentHelp("Also write samples to ClickHouse: http[s]://[USER:PASSWORD@]HOST[:8123][/?database=DB].", valueName: "url"))
    var clickhouse: String?

    @Option(help: ArgumentHelp("Where batches wait while ClickHouse is down.", valueName: "dir"))
    var clickhouseSpool: String?

    @Option(help: ArgumentHelp("Also push each window to Grafana Pyroscope (its /ingest API).", valueName: "url"))
    var pyroscope: String?

    @Option(name: .customLong("label"), help: ArgumentHelp("A static label on every sample (repeatable).", valueName: "key=value"))
    var labels: [String] = []

    @Option(name: .shortAndLong, help: ArgumentHelp("Stop after this many seconds (default: until SIGTERM).", valueName: "seconds"))
    var duration: Double?

    @Flag(help: "Keep all of root's capabilities (by default, once its programs are loaded the agent keeps only cap_bpf, cap_perfmon, cap_sys_ptrace, cap_dac_read_search, cap_checkpoint_restore and cap_syslog).")
    var keepRoot = false

    /// The default configuration file.
    static let defaultConfigPath = "/etc/sprof/agent.toml"

    func validate() throws {
        if let d = duration, !(d > 0) { throw ValidationError("-d \(d): expected a positive number of seconds") }
        if noStore && store != nil { throw ValidationError("--store and --no-store contradict each other") }
    }

    /// The file, then the flags over it.
    func effectiveConfig() throws -> AgentConfig {
        var c: AgentConfig
        if let config {
            c = try AgentConfig.load(path: config)
        } else if access(Self.defaultConfigPath, F_OK) == 0 {
            c = try AgentConfig.load(path: Self.defaultConfigPath)
        } else {
            c = AgentConfig()
        }
        func bad(_ flag: String, _ value: String, _ expected: String) -> ValidationError {
            ValidationError("\(flag) \(value): expected \(expected)")
        }
        if let frequency { c.frequency = frequency }
        if let window {
            guard let w = AgentConfig.parseDuration(window) else { throw bad("--window", window, "a duration like 10s or 1m") }
            c.window = w
        }
        if let offCPU { c.offCPU = offCPU }
        if let stackSize {
            guard let b = AgentConfig.parseSize(stackSize) else { throw bad("--stack-size", stackSize, "bytes like 16k") }
            c.stackSize = b
        }
        if let cpuBudget {
            let text = cpuBudget.trimmingCharacters(in: .whitespaces)
            let value = text.hasSuffix("%") ? Double(text.dropLast()).map { $0 / 100 } : Double(text)
            guard let v = value else { throw bad("--cpu-budget", cpuBudget, "a share of one core like 1% or 0.01") }
            c.cpuBudget = v
        }
        if let host { c.host = host }
        if let store { c.storeEnabled = true; c.storeDirectory = store }
        if noStore { c.storeEnabled = false }
        if let storeMaxAge {
            guard let a = AgentConfig.parseDuration(storeMaxAge) else { throw bad("--store-max-age", storeMaxAge, "a duration like 7d") }
            c.storeMaxAge = a
        }
        if let storeMaxSize {
            guard let b = AgentConfig.parseSize(storeMaxSize) else { throw bad("--store-max-size", storeMaxSize, "a size like 2GiB") }
            c.storeMaxBytes = b
        }
        if let http { c.httpListen = http == "off" ? "" : http }
        if httpAllowRemote { c.httpAllowRemote = true }
        if keepRoot { c.keepRoot = true }
        if let clickhouse { c.clickhouseURL = clickhouse }
        if let clickhouseSpool { c.clickhouseSpoolDirectory = clickhouseSpool }
        if let pyroscope { c.pyroscopeURL = pyroscope }
        for l in labels {
            guard let eq = l.firstIndex(of: "="), eq != l.startIndex else { throw bad("--label", l, "key=value") }
            c.labels[String(l[..<eq])] = String(l[l.index(after: eq)...])
        }
        try c.validate(source: "the command line")
        return c
    }

    /// The configuration made concrete: default directories chosen, the host known.
    static func settings(from c: AgentConfig, duration: Double?) -> AgentSettings {
        var s = AgentSettings()
        s.frequency = c.frequency
        s.windowSeconds = c.window
        s.offCPU = c.offCPU
        s.offCPUMinimumMicroseconds = Double(c.offCPUMinMicroseconds)
        s.userStackSize = c.stackSize
        s.cpuBudget = c.cpuBudget
        if !c.host.isEmpty { s.host = c.host }
        let storeDefault = ProfileStore.defaultDirectory()
        s.storeDirectory = c.storeEnabled ? (c.storeDirectory.isEmpty ? storeDefault : c.storeDirectory) : nil
        s.storeMaxAge = c.storeMaxAge
        s.storeMaxBytes = c.storeMaxBytes
        s.listen = c.httpListen.isEmpty ? nil : c.httpListen
        s.allowRemote = c.httpAllowRemote
        s.clickHouseURL = c.clickhouseURL.isEmpty ? nil : c.clickhouseURL
        let stateDirectory = (storeDefault as NSString).deletingLastPathComponent
        s.clickHouseSpoolDirectory = c.clickhouseSpoolDirectory.isEmpty ? stateDirectory + "/clickhouse-spool" : c.clickhouseSpoolDirectory
        s.clickHouseSpoolBytes = c.clickhouseSpoolMaxBytes
        s.clickHouseRetentionDays = c.clickhouseRetentionDays
        s.pyroscopeURL = c.pyroscopeURL.isEmpty ? nil : c.pyroscopeURL
        s.pyroscopeAppName = c.pyroscopeAppName
        s.labels = c.labels
        s.duration = duration
        s.keepRoot = c.keepRoot
        return s
    }

    func run() throws {
        let config: AgentConfig
        do { config = try effectiveConfig() } catch { fail("\(error)") }
        if printConfig {
            print(config.rendered(), terminator: "")
            return
        }
        Sprof.bootstrapLogging(verbose: false)
        let copy = self
        let runner = AgentRunner(settings: Self.settings(from: config, duration: duration)) {
            // SIGHUP: the file again, the same flags over it.
            Self.settings(from: try copy.effectiveConfig(), duration: copy.duration)
        }
        signal(SIGINT) { sig in recordStopRequested.store(sig, ordering: .relaxed) }
        signal(SIGTERM) { sig in recordStopRequested.store(sig, ordering: .relaxed) }
        signal(SIGHUP) { sig in recordStopRequested.store(sig, ordering: .relaxed) }
        let status = runner.runUntilStopped()
        if status != 0 { throw ExitCode(status) }
    }
}

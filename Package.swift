// swift-tools-version:6.1
// sprof: an eBPF sampling profiler for Linux. See README.md.
import PackageDescription

let package = Package(
    name: "sprof",
    products: [
        .executable(name: "sprof", targets: ["sprof"]),
        .library(name: "SprofSymbols", targets: ["SprofSymbols"]),
        .library(name: "SprofFlameGraph", targets: ["SprofFlameGraph"]),
        .library(name: "SprofBase", targets: ["SprofBase"]),
        .library(name: "SprofCapture", targets: ["SprofCapture"]),
        .library(name: "SprofUnwind", targets: ["SprofUnwind"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries found with pkg-config (Debian: libbpf-dev, libelf-dev, libdw-dev).
        .systemLibrary(name: "CLibBPF", path: "Sources/CLibBPF", pkgConfig: "libbpf",
                       providers: [.apt(["libbpf-dev"])]),
        .systemLibrary(name: "CLibElf", path: "Sources/CLibElf", pkgConfig: "libelf",
                       providers: [.apt(["libelf-dev"])]),
        .systemLibrary(name: "CLibDW", path: "Sources/CLibDW", pkgConfig: "libdw",
                       providers: [.apt(["libdw-dev"])]),
        // What does not import into Swift: syscall(2) wrappers, the libbpf print
        // callback, offsetof/sizeof, and the embedded BPF objects. The only C
        // interop outside the system-library modules.
        .target(name: "CSprof", dependencies: ["CLibBPF"], path: "Sources/CSprof",
                cSettings: [.headerSearchPath("../../bpf/include")]),
        // Value types every layer shares: typed addresses, build-ids, mappings.
        .target(name: "SprofBase", path: "Sources/Base"),
        // openat2(2) and the SIGBUS guard for mapped files: the C that SprofELF
        // needs (no BPF, no libraries), so the symbolization library stays usable on its own.
        .target(name: "CSprofFiles", path: "Sources/CSprofFiles"),
        // ELF files: headers, sections, notes, build-id (zero-copy over mmap).
        .target(name: "SprofELF", dependencies: ["SprofBase", "CSprofFiles"], path: "Sources/ELF", exclude: ["README.md"]),
        // Capture: BPF loading, ring buffer, process tracking, the raw file.
        .target(name: "SprofCapture",
                dependencies: ["CSprof", "CLibBPF", "SprofBase", "SprofELF",
                               .product(name: "Logging", package: "swift-log")],
                path: "Sources/Capture"),
        // The DWARF CFI unwinder: raw samples (registers + stack bytes +
        // mappings) to exact return addresses.
        .target(name: "SprofUnwind", dependencies: ["SprofBase", "SprofELF", "SprofCapture", "CSprof", "CUnwindOracle"],
                path: "Sources/Unwind", exclude: ["README.md"],
                // The hot path touches class properties per sample and per frame (counters,
                // the last process, the rule cache); their run-time exclusivity checks
                // (swift_beginAccess) halved the unwinder's speed: 16 -> 34 M frames/s on
                // c_chain (sprof report --stats). Static checking stays on; the unwinder is
                // single-threaded by contract (SampleUnwinder: one per thread).
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // libunwind's remote unwinder (the one perf uses), as an oracle for
        // differential tests and `sprof report --unwinder libunwind`.
        .systemLibrary(name: "CLibUnwind", path: "Sources/CLibUnwind", pkgConfig: "libunwind-generic",
                       providers: [.apt(["libunwind-dev"])]),
        .target(name: "CUnwindOracle", dependencies: ["CLibUnwind"], path: "Sources/CUnwindOracle"),
        // libiberty's demangler (C++ Itanium, Rust legacy and v0): the one
        // binutils' nm -C and addr2line -C use. No pkg-config file; Debian: libiberty-dev.
        .systemLibrary(name: "CLibIberty", path: "Sources/CLibIberty", providers: [.apt(["libiberty-dev"])]),
        // Symbolization; knows nothing of BPF. Usable on its own.
        .target(name: "SprofSymbols", dependencies: ["SprofBase", "SprofELF", "CLibDW", "CLibElf", "CLibIberty"], path: "symbols"),
        // zlib, for gzip (Debian: zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The profile model and its pprof encoding (gzip-compressed profile.proto);
        // knows nothing of BPF, ELF or symbols.
        .target(name: "SprofProfile",
                dependencies: ["CZlib", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                path: "Sources/Profile", exclude: ["Proto/profile.proto", "README.md"]),
        // The agent's local store: windows as gzipped pprof files, retention, merging (issue 9).
        .target(name: "SprofStore", dependencies: ["SprofBase", "SprofProfile"], path: "Sources/Store"),
        // The agent's ClickHouse sink and `sprof query` (issue 9).
        .target(name: "SprofClickHouse", dependencies: ["SprofBase", "SprofProfile"], path: "Sources/ClickHouse", exclude: ["README.md"]),
        // `sprof agent`'s parts (issue 9): configuration, cgroup labels, the local HTTP
        // endpoint and its page, metrics, the CPU budget, the Pyroscope push.
        .target(name: "SprofAgent", dependencies: ["SprofBase", "SprofProfile", "SprofStore", "SprofFlameGraph"],
                path: "Sources/Agent"),
        // Folded stacks to SVG/HTML; knows nothing of BPF or ELF. Usable on its own.
        .target(name: "SprofFlameGraph", path: "flamegraph"),
        .executableTarget(name: "sprof",
                          dependencies: ["SprofBase", "SprofCapture", "SprofUnwind", "SprofSymbols", "SprofProfile", "SprofFlameGraph",
                                         "SprofStore", "SprofClickHouse", "SprofAgent", "CSprof",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log")],
                          path: "Sources/sprof"),
        .testTarget(name: "SprofTests",
                    dependencies: ["SprofBase", "SprofCapture", "SprofELF", "SprofUnwind", "SprofSymbols", "SprofProfile", "SprofFlameGraph", "CSprof",
                                   "SprofStore", "SprofClickHouse", "SprofAgent"],
                    path: "Tests/SprofTests"),
        .testTarget(name: "KernelTests",
                    dependencies: ["SprofBase", "SprofCapture", "SprofELF", "SprofUnwind", "SprofSymbols", "SprofProfile", "SprofStore", "CSprof", "sprof"],
                    path: "Tests/KernelTests"),
    ],
    swiftLanguageModes: [.v6]
)

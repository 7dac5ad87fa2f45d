// swift-tools-version:6.1
// Micro-benchmarks of sprof's unwinder, symbolizer and flame-graph renderer
// (issue 8), with ordo-one/benchmark. A package of its own so that the
// benchmark dependency (and its malloc interposer) never reaches sprof's
// build. Run: bench/micro/run (README.md beside this file).
import PackageDescription

let package = Package(
    name: "sprof-micro-benchmarks",
    dependencies: [
        .package(path: "../.."),
        // MallocInterposer: malloc counts per iteration without jemalloc (Swift
        // 6.3's default backend). Naming the trait leaves out the package's other
        // default trait, RuntimeInterposer, whose package is not available here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        // What the three benchmark targets share (rate metrics, run length).
        .target(name: "MicroSupport", dependencies: [.product(name: "Benchmark", package: "benchmark")]),
        .executableTarget(
            name: "Unwinder",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                "MicroSupport",
                .product(name: "SprofBase", package: "main"),
                .product(name: "SprofCapture", package: "main"),
                .product(name: "SprofUnwind", package: "main"),
            ],
            path: "Benchmarks/Unwinder",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Symbolizer",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                "MicroSupport",
                .product(name: "SprofBase", package: "main"),
                .product(name: "SprofSymbols", package: "main"),
            ],
            path: "Benchmarks/Symbolizer",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "FlameGraph",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                "MicroSupport",
                .product(name: "SprofFlameGraph", package: "main"),
            ],
            path: "Benchmarks/FlameGraph",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

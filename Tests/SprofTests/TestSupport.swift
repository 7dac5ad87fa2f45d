import Foundation
import XCTest

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so every
/// randomized test reproduces from its seed. The one copy the tests share.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    init(state: UInt64) { self.state = state }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A missing tool or toolchain: outside CI the test skips, loudly (the
/// reason is in the skip); with CI=true it fails instead, as KernelTests'
/// `requireKernelAccess` does: a test never silently skips in CI. Throw
/// what this returns.
func skipOrFailInCI(_ why: String, file: StaticString = #filePath, line: UInt = #line) -> XCTSkip {
    if ProcessInfo.processInfo.environment["CI"] == "true" {
        XCTFail("CI=true: \(why)", file: file, line: line)
        return XCTSkip("failed above: \(why)")
    }
    return XCTSkip(why)
}

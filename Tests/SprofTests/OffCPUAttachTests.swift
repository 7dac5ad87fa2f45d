import CSprof
import XCTest
@testable import SprofCapture

/// The off-CPU attach points' names and the kprobe symbol lookup, on
/// /proc/kallsyms text as kernels print it.
final class OffCPUAttachTests: XCTestCase {
    func kallsyms(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\n") + "\n").utf8) }

    func testFinishTaskSwitchIsFoundUnderItsOwnNameOrAsALocalClone() {
        // 6.x built with gcc: only the .isra clone exists.
        XCTAssertEqual(OffCPUAttachPoint.finishTaskSwitchSymbol(kallsyms: kallsyms([
            "ffffffff813a2100 t prepare_task_switch",
            "ffffffff813a2200 t finish_task_switch.isra.0",
            "ffffffff813a2300 T schedule_tail",
        ])), "finish_task_switch.isra.0")
        // The plain name wins over a clone wherever it is.
        XCTAssertEqual(OffCPUAttachPoint.finishTaskSwitchSymbol(kallsyms: kallsyms([
            "ffffffff813a2200 t finish_task_switch.isra.0",
            "ffffffff813a2400 t finish_task_switch",
        ])), "finish_task_switch")
        // A data symbol or a longer name is not it; a module symbol line has a tab.
        XCTAssertNil(OffCPUAttachPoint.finishTaskSwitchSymbol(kallsyms: kallsyms([
            "ffffffff82000000 d finish_task_switch",
            "ffffffff813a2200 t finish_task_switch_helper\t[mymod]",
            "ffffffff813a2200 t __finish_task_switch",
        ])))
        XCTAssertNil(OffCPUAttachPoint.finishTaskSwitchSymbol(kallsyms: []))
    }

    func testAttachPointNamesRoundTripAndFollowThePreferenceOrder() {
        XCTAssertEqual(OffCPUAttachPoint.allCases.map(\.shortName), ["kprobe", "fentry", "tp_btf", "raw_tp", "tracepoint"])
        for p in OffCPUAttachPoint.allCases { XCTAssertEqual(OffCPUAttachPoint(shortName: p.shortName), p) }
        XCTAssertNil(OffCPUAttachPoint(shortName: "uprobe"))
        // Only the tracepoint variants need resume programs, one family each.
        XCTAssertEqual(OffCPUAttachPoint.kprobe.resumePrograms(haveRseq: true), [])
        XCTAssertEqual(OffCPUAttachPoint.tpBTF.resumePrograms(haveRseq: true), ["sprof_resume_sys_exit_btf", "sprof_resume_rseq_btf"])
        XCTAssertEqual(OffCPUAttachPoint.tracepoint.resumePrograms(haveRseq: false), ["sprof_resume_sys_exit_tp"])
    }

    func testEveryOffCPUProgramIsInTheEmbeddedObject() throws {
        // The names are in the object's ELF string table (no kernel needed to read them).
        var length = 0
        let bytes = UnsafeRawBufferPointer(start: sprof_sprof_bpf_object(&length), count: length)
        let text = String(decoding: bytes, as: UTF8.self)
        for name in OffCPUAttachPoint.allPrograms { XCTAssertTrue(text.contains(name), name) }
    }
}

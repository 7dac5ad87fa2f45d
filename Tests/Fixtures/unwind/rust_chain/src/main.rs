// Rust release: main -> (std's lang_start frames) -> rust_chain::main -> run -> level1 -> level2 -> leaf_hot.
// Our five frames are #[no_mangle] so their names do not carry the legacy-mangling hash
// (`17h<16 hex>E`), which changes with the toolchain and the crate's path; see README.md.
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Outer-loop iterations, read by bench/compare.py through /proc/PID/mem (see ../common.h).
#[no_mangle]
pub static SPROF_WORK: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
#[inline(never)]
pub fn leaf_hot(mut x: u64, n: u64) -> u64 {
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x ^= x >> 29;
    }
    x
}

// black_box on the result: work after each call, so no tail calls.
#[no_mangle]
#[inline(never)]
pub fn level2(x: u64, n: u64) -> u64 { let r = leaf_hot(black_box(x), n); black_box(r).wrapping_add(1) }

#[no_mangle]
#[inline(never)]
pub fn level1(x: u64, n: u64) -> u64 { let r = level2(black_box(x), n); black_box(r) ^ 3 }

#[no_mangle]
#[inline(never)]
pub fn run(seconds: f64) -> u64 {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut a = 1u64;
    while Instant::now() < end {
        a = a.wrapping_add(level1(a, black_box(100_000)));
        SPROF_WORK.fetch_add(1, Ordering::Relaxed);
    }
    a
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    println!("pid={}", std::process::id());
    std::io::stdout().flush().unwrap();
    black_box(run(black_box(seconds)));
}

//! The heap trimmer hands freed memory back to the system (its own process, so no other test's
//! allocations move the resident size it measures).

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::time::Duration;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn freed_heap_goes_back_to_the_system() {
    // 64 MiB of small blocks (below the mmap threshold, so they live in the heap), written so
    // they are resident, then freed while one block allocated after them pins the heap's top:
    // without a trim glibc keeps all of it.
    let blocks: Vec<Vec<u8>> = (0..64 * 1024)
        .map(|i| vec![(i % 251) as u8 + 1; 1024])
        .collect();
    let pin = vec![1u8; 1024];
    drop(blocks);
    let freed = resident_kib();
    oxcd_server::memory::spawn_heap_trimmer(Duration::from_millis(20))
        .unwrap_or_else(|e| panic!("start the trimmer: {e}"));
    // Bounded wait: the trimmer runs every 20 ms.
    let mut trimmed = freed;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        trimmed = resident_kib();
        if trimmed + 32 * 1024 < freed {
            break;
        }
    }
    assert_eq!(pin[0], 1);
    assert!(
        trimmed + 32 * 1024 < freed,
        "64 MiB freed in the heap should go back to the system: resident {freed} KiB after the \
         free, {trimmed} KiB two seconds later"
    );
}

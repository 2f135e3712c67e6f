//! Gives the heap memory the member has freed back to the operating system.
//!
//! glibc's malloc keeps freed memory in its arenas and returns it only from the top of each heap,
//! so after a burst of writes most of a member's resident memory can be free heap: loading 1 M
//! keys left 763 MB resident, 250 MB of it in use (`malloc_trim` returned the rest). etcd's Go
//! runtime hands idle heap back on its own; a member here asks glibc to do the same at a fixed
//! pace from a thread of its own, so the resident size follows what is in use.

use std::time::Duration;

/// How often freed memory is handed back: often enough that a write burst cannot pile up
/// hundreds of megabytes between two trims, rarely enough that the pages glibc gives back are
/// not faulted in again at once.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the thread that trims the heap every `interval`, for the rest of the process. A
/// process starts it once (the binary's `main`); elsewhere than glibc it does nothing.
pub fn spawn_heap_trimmer(interval: Duration) -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::Builder::new()
        .name("oxcd-heap-trim".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                trim();
            }
        })?;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = interval;
    Ok(())
}

/// Returns the free memory of every arena to the system; what is in use is untouched.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the one foreign call of the server: glibc has no safe binding for it
fn trim() {
    // SAFETY: malloc_trim(3) takes no pointers and only releases memory malloc holds free; it
    // locks each arena itself, so calling it while other threads allocate is sound.
    unsafe {
        libc::malloc_trim(0);
    }
}

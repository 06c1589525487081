//! The process's resident memory, as the kernel counts it.
//!
//! The write path counts what it allocates (see [`crate::store::WriteMemory`]),
//! but the allocator keeps some of what is freed, and code, stacks and
//! buffers outside the write path count too. The process's resident set is
//! what an operator's memory cap is about, so ingest also checks it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a reading is reused: ingest asks for one per request.
const FRESH: Duration = Duration::from_millis(5);

static LAST: Mutex<Option<(Instant, usize)>> = Mutex::new(None);

/// This process's resident set size in bytes, at most 5 ms old; 0
/// where the system does not tell (no `/proc`).
pub fn resident_bytes() -> usize {
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, bytes)) = *last
        && at.elapsed() < FRESH
    {
        return bytes;
    }
    let bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_rss(&s))
        .unwrap_or(0);
    *last = Some((Instant::now(), bytes));
    bytes
}

/// The `VmRSS:` line of a `/proc/PID/status` text, in bytes.
fn vm_rss(status: &str) -> Option<usize> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: usize = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_line_is_read_in_bytes() {
        let status = "Name:\tweft\nVmHWM:\t  900 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(vm_rss(status), Some(123_456 * 1024));
        assert_eq!(vm_rss("Name:\tweft\n"), None);
        assert_eq!(vm_rss("VmRSS:\tlots\n"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_has_resident_memory() {
        // A running test binary is at least a few hundred KiB resident,
        // and far less than a terabyte.
        let bytes = resident_bytes();
        assert!(bytes > 256 << 10 && bytes < 1 << 40, "{bytes}");
    }
}

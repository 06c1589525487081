//! Shared pieces of weft's benchmark binaries: running a command while
//! measuring its CPU time, and locating sibling binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// CPU seconds (user, system) used by all waited-for children so far.
#[allow(unsafe_code)]
pub fn children_cpu() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full `rusage` into the pointer it is given,
    // which points at a zeroed value of that type; it has no other effects.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr());
        ru.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// CPU seconds (user + system) the calling thread has used so far.
#[allow(unsafe_code)]
pub fn thread_cpu() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: as in `children_cpu`; RUSAGE_THREAD reports this thread only.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr());
        ru.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// What one measured command cost.
#[derive(Debug, Clone)]
pub struct Run {
    pub wall: f64,
    pub user: f64,
    pub sys: f64,
    pub output: Output,
}

impl Run {
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// Runs `cmd` to completion, measuring wall time and its user+sys CPU.
/// Fails when the command does.
pub fn measure(cmd: &mut Command) -> Result<Run> {
    let (u0, s0) = children_cpu();
    let start = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let wall = start.elapsed().as_secs_f64();
    let (u1, s1) = children_cpu();
    if !output.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Run {
        wall,
        user: u1 - u0,
        sys: s1 - s0,
        output,
    })
}

/// A binary built beside the running one (same target directory and profile).
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("executable has a directory")?
        .join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p weft -p weft-benches`",
            path.display()
        );
    }
    Ok(path)
}

/// Reads a file once so later runs measure CPU, not the disk.
pub fn warm(path: &Path) -> Result<u64> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(std::io::copy(&mut f, &mut std::io::sink())?)
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

/// The machine, for the results table.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem}")
}

/// `all` cut into pieces of at most `size` bytes that end at line ends, as
/// a shipper batches lines into requests; a line longer than `size` is a
/// piece of its own.
pub fn cut_at_line_ends(all: &[u8], size: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = all;
    while !rest.is_empty() {
        let cut = if rest.len() <= size {
            rest.len()
        } else {
            rest[..size]
                .iter()
                .rposition(|&b| b == b'\n')
                .or_else(|| {
                    rest[size..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map(|i| size + i)
                })
                .map_or(rest.len(), |i| i + 1)
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cut_at_line_ends;

    #[test]
    fn pieces_end_at_line_ends_and_keep_every_byte() {
        let all = b"aa\nbbbb\nc\ndddddddd\ne";
        let pieces = cut_at_line_ends(all, 5);
        assert_eq!(
            pieces,
            vec![&b"aa\n"[..], b"bbbb\n", b"c\n", b"dddddddd\n", b"e"]
        );
        assert_eq!(pieces.concat(), all);
        assert_eq!(cut_at_line_ends(b"", 5), Vec::<&[u8]>::new());
    }
}

//! What the operating system says about a process and a file: a process's
//! memory (`/proc`), and how much of a file sits in the page cache
//! (`mincore(2)`), with the means to drop a file from it or read it in.
//! Shared by the host (its status), the client (`vembed bench`) and the
//! lab (`vembed-lab experiment`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessMemory {
    /// Resident set size (`VmRSS`).
    pub rss: u64,
    /// Proportional set size: shared pages divided among their sharers.
    pub pss: u64,
    /// Anonymous resident memory (`RssAnon`).
    pub rss_anon: u64,
    /// File-backed resident memory (`RssFile`).
    pub rss_file: u64,
    /// Peak resident set size (`VmHWM`).
    pub peak_rss: u64,
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Memory of process `pid` (a number, or `self`) from `/proc/PID/status`
/// and `/proc/PID/smaps_rollup`. A process that is gone reads as zeros.
pub fn memory_of(pid: &str) -> ProcessMemory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    ProcessMemory {
        rss: kib_field(&status, "VmRSS:"),
        pss: kib_field(&rollup, "Pss:"),
        rss_anon: kib_field(&status, "RssAnon:"),
        rss_file: kib_field(&status, "RssFile:"),
        peak_rss: kib_field(&status, "VmHWM:"),
    }
}

/// How many bytes of a file sit in the page cache, from `mincore(2)`.
/// Returns `(file size, resident bytes)`.
pub fn residency(path: &Path) -> io::Result<(u64, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((0, 0));
    }
    // SAFETY: a read-only private mapping of a file this process opened; it
    // is never read (mincore only inspects which pages are resident, so no
    // page is faulted in), so a concurrent truncation cannot fault us.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let mut vec = vec![0u8; map.len().div_ceil(page)];
    // SAFETY: `map` is a live mapping of `map.len()` bytes at a page-aligned
    // address, and `vec` has one byte per page of it, as mincore(2) requires.
    let rc =
        unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map.len(), vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let resident = vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * page as u64;
    Ok((len, resident.min(len)))
}

/// Asks the kernel to drop a file's clean pages from the page cache
/// (`posix_fadvise(POSIX_FADV_DONTNEED)`, which needs no privilege). Pages
/// that another process has mapped and is using may stay: check with
/// [`residency`].
pub fn evict(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // fdatasync first: dirty pages are not dropped.
    file.sync_data()?;
    // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Reads a whole file once, so that all of it is in the page cache.
pub fn preload(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// The 1-minute load average (0 where `/proc/loadavg` cannot be read).
pub fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_is_read() {
        let m = memory_of("self");
        assert!(m.rss > 0 && m.pss > 0 && m.peak_rss >= m.rss, "{m:?}");
    }

    #[test]
    fn a_file_is_evicted_and_read_back_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        assert_eq!(preload(&path).unwrap(), 1 << 20);
        let (len, resident) = residency(&path).unwrap();
        assert_eq!(len, 1 << 20);
        assert_eq!(resident, len, "read in full");
        evict(&path).unwrap();
        let (_, after) = residency(&path).unwrap();
        // tmpfs keeps its pages (they are the file): only a real disk drops them.
        let on_tmpfs = nix::sys::statfs::statfs(dir.path())
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        if !on_tmpfs {
            assert_eq!(after, 0, "evicted");
        }
    }
}

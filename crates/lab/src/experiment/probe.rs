//! The machine under the experiment: its CPU and last-level cache, the load
//! average, flushing the CPU caches, and last-level-cache counters
//! (`perf_event_open`) where the kernel and the VM allow them.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};

use serde::Serialize;

/// What the report says about the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub llc_bytes: u64,
    pub llc_level: u32,
    pub kernel: String,
    pub perf_event_paranoid: Option<i32>,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let (llc_level, llc_bytes) = last_level_cache();
        Machine {
            cpu_model,
            cpus: online_cpus().len(),
            llc_bytes,
            llc_level,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            perf_event_paranoid: fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        }
    }
}

pub(crate) use vembed_models::os::load_avg;

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.strip_suffix('K') {
        Some(n) => (n, 1024),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1024 * 1024),
            None => (s, 1),
        },
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// The deepest cache level of CPU 0 and its size, from sysfs; (0, 0) when
/// sysfs does not say.
fn last_level_cache() -> (u32, u64) {
    let mut best = (0, 0);
    let Ok(dir) = fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else { return best };
    for entry in dir.flatten() {
        let p = entry.path();
        let level = fs::read_to_string(p.join("level")).ok().and_then(|s| s.trim().parse().ok());
        let size = fs::read_to_string(p.join("size")).ok().and_then(|s| parse_size(&s));
        if let (Some(level), Some(size)) = (level, size)
            && level >= best.0
        {
            best = (level, size);
        }
    }
    best
}

fn online_cpus() -> Vec<usize> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}

/// Evicts the CPU caches: one thread pinned to each online CPU writes and
/// then reads a buffer of twice the last-level cache (at least 32 MiB), so
/// every core's L1/L2 and the shared L3 hold only that buffer afterwards.
pub fn flush_cpu_caches(llc_bytes: u64) {
    let bytes = (2 * llc_bytes).max(32 << 20) as usize;
    std::thread::scope(|s| {
        for cpu in online_cpus() {
            s.spawn(move || {
                let mut set = nix::sched::CpuSet::new();
                if set.set(cpu).is_ok() {
                    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                }
                let mut buf = vec![0u8; bytes];
                for (i, b) in buf.iter_mut().enumerate().step_by(64) {
                    *b = i as u8;
                }
                let mut sum = 0u64;
                for b in buf.iter().step_by(64) {
                    sum = sum.wrapping_add(u64::from(*b));
                }
                std::hint::black_box(sum);
            });
        }
    });
}

/// The `perf_event_attr` of the kernel ABI, up to `sig_data`
/// (`PERF_ATTR_SIZE_VER7`, 128 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved2: u16,
    aux_sample_size: u32,
    reserved3: u32,
    sig_data: u64,
}

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_TYPE_HW_CACHE: u32 = 3;
const PERF_COUNT_HW_CACHE_REFERENCES: u64 = 2;
const PERF_COUNT_HW_CACHE_MISSES: u64 = 3;
/// `PERF_COUNT_HW_CACHE_LL | OP_READ << 8 | RESULT_ACCESS << 16`.
const LL_READ_ACCESS: u64 = 2;
/// `PERF_COUNT_HW_CACHE_LL | OP_READ << 8 | RESULT_MISS << 16`.
const LL_READ_MISS: u64 = 2 | (1 << 16);
/// `exclude_kernel` (bit 5) and `exclude_hv` (bit 6).
const EXCLUDE_KERNEL_HV: u64 = (1 << 5) | (1 << 6);

fn open_counter(type_: u32, config: u64, tid: i32) -> Result<OwnedFd, std::io::Error> {
    let attr = PerfEventAttr {
        type_,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config,
        flags: EXCLUDE_KERNEL_HV,
        ..PerfEventAttr::default()
    };
    // SAFETY: perf_event_open(2) reads `attr` (a valid, fully initialised
    // struct whose `size` field says how large it is) and returns a new
    // descriptor or -1; no memory is shared with the kernel afterwards.
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, tid, -1, -1, 0)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel has just returned to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn read_counter(fd: &OwnedFd) -> u64 {
    let mut v = [0u8; 8];
    match nix::unistd::read(fd, &mut v) {
        Ok(8) => u64::from_ne_bytes(v),
        _ => 0,
    }
}

/// Last-level-cache loads and misses of every thread of one process.
pub struct CacheCounters {
    /// Which events: `LLC-loads/LLC-load-misses` or `cache-references/cache-misses`.
    pub events: &'static str,
    fds: Vec<(OwnedFd, OwnedFd)>,
}

/// Loads and misses counted over one measured step.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CacheCount {
    pub loads: u64,
    pub misses: u64,
}

impl CacheCount {
    pub fn hit_rate(&self) -> Option<f64> {
        (self.loads > 0).then(|| 1.0 - self.misses.min(self.loads) as f64 / self.loads as f64)
    }
}

impl CacheCounters {
    /// Opens counters on every thread of `pid`, or says why it cannot.
    pub fn open(pid: u32) -> Result<CacheCounters, String> {
        let tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| format!("/proc/{pid}/task: {e}"))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        let tries: [(&'static str, u32, u64, u64); 2] = [
            ("LLC-loads/LLC-load-misses", PERF_TYPE_HW_CACHE, LL_READ_ACCESS, LL_READ_MISS),
            (
                "cache-references/cache-misses",
                PERF_TYPE_HARDWARE,
                PERF_COUNT_HW_CACHE_REFERENCES,
                PERF_COUNT_HW_CACHE_MISSES,
            ),
        ];
        let mut why = Vec::new();
        'events: for (events, type_, loads, misses) in tries {
            let mut fds = Vec::new();
            for &tid in &tids {
                let pair = open_counter(type_, loads, tid)
                    .and_then(|l| open_counter(type_, misses, tid).map(|m| (l, m)));
                match pair {
                    Ok(p) => fds.push(p),
                    Err(e) => {
                        why.push(format!("{events}: {e}"));
                        continue 'events;
                    }
                }
            }
            return Ok(CacheCounters { events, fds });
        }
        let pmu = std::path::Path::new("/sys/bus/event_source/devices/cpu").exists();
        Err(format!(
            "perf_event_open refused ({}); perf_event_paranoid is {}; {}",
            why.join("; "),
            fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
            if pmu {
                "the kernel exposes a CPU PMU"
            } else {
                "this machine exposes no hardware PMU (no /sys/bus/event_source/devices/cpu: a VM without a virtual PMU)"
            }
        ))
    }

    /// The counts so far, summed over threads.
    pub fn read(&self) -> CacheCount {
        let mut c = CacheCount { loads: 0, misses: 0 };
        for (l, m) in &self.fds {
            c.loads += read_counter(l);
            c.misses += read_counter(m);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attr_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 128);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8192K\n"), Some(8 << 20));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn the_machine_is_read() {
        let m = Machine::read();
        assert!(m.cpus >= 1);
        assert!(!m.cpu_model.is_empty());
    }
}

//! Resident memory of the runtime: the sum of `VmRSS` over the `workerd`
//! processes of the `wrangler dev` process group, read from /proc.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One process as /proc/<pid>/stat describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The process id.
    pub pid: i32,
    /// `comm` without the parentheses.
    pub comm: String,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// User plus system CPU time, clock ticks.
    pub cpu_ticks: u64,
}

/// Parses the text of /proc/<pid>/stat. `comm` may hold spaces and
/// parentheses, so the fields after it are found from the last `)`.
#[must_use]
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    // session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    let mut rest = rest.skip(8);
    let utime: u64 = rest.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = rest.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(ProcStat {
        pid,
        comm,
        ppid,
        pgrp,
        cpu_ticks: utime + stime,
    })
}

/// `VmRSS` of a /proc/<pid>/status text, in bytes.
#[must_use]
pub fn parse_vmrss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect()
}

/// Clock ticks per second of /proc's CPU times (`USER_HZ`, 100 on Linux).
pub const TICKS_PER_SECOND: u64 = 100;

/// The processes in group `pgid` or descending from its leader.
#[must_use]
pub fn select_group(procs: &[ProcStat], pgid: i32) -> Vec<&ProcStat> {
    let mut members: Vec<i32> = vec![pgid];
    // Descendants of the leader (in case a child made a group of its own).
    let mut grew = true;
    while grew {
        grew = false;
        for p in procs {
            if !members.contains(&p.pid) && (p.pgrp == pgid || members.contains(&p.ppid)) {
                members.push(p.pid);
                grew = true;
            }
        }
    }
    procs.iter().filter(|p| members.contains(&p.pid)).collect()
}

/// The `workerd` processes in group `pgid` or descending from its leader.
#[must_use]
pub fn select_workerd(procs: &[ProcStat], pgid: i32) -> Vec<i32> {
    select_group(procs, pgid)
        .into_iter()
        .filter(|p| p.comm == "workerd")
        .map(|p| p.pid)
        .collect()
}

/// CPU time used so far by the runtime: every process of the group
/// (workerd, node, esbuild), and the workerd processes alone; milliseconds.
#[must_use]
pub fn runtime_cpu_ms(pgid: i32) -> (u64, u64) {
    let procs = all_processes();
    let group = select_group(&procs, pgid);
    let all: u64 = group.iter().map(|p| p.cpu_ticks).sum();
    let workerd: u64 = group
        .iter()
        .filter(|p| p.comm == "workerd")
        .map(|p| p.cpu_ticks)
        .sum();
    (
        all * 1000 / TICKS_PER_SECOND,
        workerd * 1000 / TICKS_PER_SECOND,
    )
}

/// CPU time used so far by this process (the load generator), milliseconds.
#[must_use]
pub fn own_cpu_ms() -> u64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_stat(&t))
        .map_or(0, |p| p.cpu_ticks * 1000 / TICKS_PER_SECOND)
}

/// CPU used by the runtime and by the load generator over a stretch of time.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    runtime_ms: Option<(u64, u64)>,
    own_ms: u64,
    at: Instant,
}

/// CPU used between a [`CpuMark`] and now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuUse {
    /// Wall time, ms.
    pub wall_ms: u64,
    /// CPU of the runtime's processes, ms (`None` with `--url`).
    pub runtime_ms: Option<u64>,
    /// Of which the workerd processes (the rest is wrangler's node).
    pub workerd_ms: Option<u64>,
    /// CPU of the load generator, ms.
    pub bench_ms: u64,
}

impl CpuMark {
    /// Now, for the group `pgid` (if known).
    #[must_use]
    pub fn now(pgid: Option<i32>) -> Self {
        Self {
            runtime_ms: pgid.map(runtime_cpu_ms),
            own_ms: own_cpu_ms(),
            at: Instant::now(),
        }
    }

    /// CPU used since this mark.
    #[must_use]
    pub fn since(&self, pgid: Option<i32>) -> CpuUse {
        let now = match (pgid, self.runtime_ms) {
            (Some(g), Some(before)) => {
                let (all, workerd) = runtime_cpu_ms(g);
                Some((
                    all.saturating_sub(before.0),
                    workerd.saturating_sub(before.1),
                ))
            }
            _ => None,
        };
        CpuUse {
            wall_ms: u64::try_from(self.at.elapsed().as_millis()).unwrap_or(u64::MAX),
            runtime_ms: now.map(|n| n.0),
            workerd_ms: now.map(|n| n.1),
            bench_ms: own_cpu_ms().saturating_sub(self.own_ms),
        }
    }
}

/// The summed resident memory of the runtime's workerd processes, with how
/// many processes were counted.
#[must_use]
pub fn runtime_rss(pgid: i32) -> (u64, usize) {
    let pids = select_workerd(&all_processes(), pgid);
    let total = pids
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|t| parse_vmrss(&t))
        .sum();
    (total, pids.len())
}

/// Peak and mean of a sampling period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RssReport {
    /// Samples taken.
    pub samples: usize,
    /// Largest sum seen, bytes.
    pub peak_bytes: u64,
    /// Mean of the sums, bytes.
    pub mean_bytes: u64,
    /// workerd processes counted in the last sample.
    pub processes: usize,
}

/// Samples [`runtime_rss`] every `interval` on a thread of its own.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(u64, usize)>>>,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling group `pgid`.
    #[must_use]
    pub fn start(pgid: i32, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let stop = Arc::clone(&stop);
            let samples = Arc::clone(&samples);
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let s = runtime_rss(pgid);
                    if let Ok(mut v) = samples.lock() {
                        v.push(s);
                    }
                    next += interval;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    } else {
                        next = Instant::now();
                    }
                }
            })
        };
        Self {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// Stops sampling (after one last sample) and reports.
    #[must_use]
    pub fn finish(mut self) -> RssReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let samples = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        summarize(&samples)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Peak and mean of `(bytes, processes)` samples.
#[must_use]
pub fn summarize(samples: &[(u64, usize)]) -> RssReport {
    if samples.is_empty() {
        return RssReport::default();
    }
    let sum: u64 = samples.iter().map(|s| s.0).sum();
    RssReport {
        samples: samples.len(),
        peak_bytes: samples.iter().map(|s| s.0).max().unwrap_or(0),
        mean_bytes: sum / samples.len() as u64,
        processes: samples.last().map_or(0, |s| s.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_names() {
        let p =
            parse_stat("1234 (work erd) (x)) S 99 77 77 0 -1 4194560 10 0 0 0 250 50 0 0").unwrap();
        assert_eq!(
            p,
            ProcStat {
                pid: 1234,
                comm: "work erd) (x)".into(),
                ppid: 99,
                pgrp: 77,
                cpu_ticks: 300,
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(
            parse_vmrss("Name: x\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn workerd_of_the_group_and_its_descendants() {
        let p = |pid, comm: &str, ppid, pgrp| ProcStat {
            pid,
            comm: comm.into(),
            ppid,
            pgrp,
            cpu_ticks: 0,
        };
        let procs = vec![
            p(10, "node", 1, 10),
            p(11, "node", 10, 10),
            p(12, "workerd", 11, 10),
            p(13, "workerd", 11, 13), // its own group, still a descendant
            p(20, "workerd", 1, 20),  // someone else's runtime
        ];
        let mut got = select_workerd(&procs, 10);
        got.sort_unstable();
        assert_eq!(got, vec![12, 13]);
    }

    #[test]
    fn summaries() {
        let r = summarize(&[(10, 2), (30, 2), (20, 3)]);
        assert_eq!(r.peak_bytes, 30);
        assert_eq!(r.mean_bytes, 20);
        assert_eq!(r.processes, 3);
        assert_eq!(r.samples, 3);
        assert_eq!(summarize(&[]), RssReport::default());
    }

    #[test]
    fn this_process_has_a_stat_and_an_rss() {
        let me = std::process::id();
        let stat = parse_stat(&fs::read_to_string(format!("/proc/{me}/stat")).unwrap()).unwrap();
        assert_eq!(stat.pid, i32::try_from(me).unwrap());
        assert!(parse_vmrss(&fs::read_to_string("/proc/self/status").unwrap()).unwrap() > 0);
        let used = CpuMark::now(None).since(None);
        assert_eq!((used.runtime_ms, used.workerd_ms), (None, None));
    }
}

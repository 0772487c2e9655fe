//! CPU time and resident memory of the runtime (the processes of the
//! `wrangler dev` process group) and of this load generator, read with the
//! `sysinfo` crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One process, as far as the bench needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The process id.
    pub pid: u32,
    /// Its name.
    pub comm: String,
    /// Parent process id (0: none).
    pub ppid: u32,
    /// User plus system CPU time, ms.
    pub cpu_ms: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

fn all_processes() -> Vec<ProcStat> {
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    sys.processes()
        .values()
        .map(|p| ProcStat {
            pid: p.pid().as_u32(),
            comm: p.name().to_string_lossy().into_owned(),
            ppid: p.parent().map_or(0, Pid::as_u32),
            cpu_ms: p.accumulated_cpu_time(),
            rss_bytes: p.memory(),
        })
        .collect()
}

/// The leader `pgid` (the `wrangler dev` the harness started in a group of
/// its own, so its pid is the group id) and every process descending from
/// it.
#[must_use]
pub fn select_group(procs: &[ProcStat], pgid: i32) -> Vec<&ProcStat> {
    let Ok(leader) = u32::try_from(pgid) else {
        return Vec::new();
    };
    let mut members: Vec<u32> = vec![leader];
    let mut grew = true;
    while grew {
        grew = false;
        for p in procs {
            if !members.contains(&p.pid) && members.contains(&p.ppid) {
                members.push(p.pid);
                grew = true;
            }
        }
    }
    procs.iter().filter(|p| members.contains(&p.pid)).collect()
}

/// The `workerd` processes of the group `pgid`.
#[must_use]
pub fn select_workerd(procs: &[ProcStat], pgid: i32) -> Vec<&ProcStat> {
    select_group(procs, pgid)
        .into_iter()
        .filter(|p| p.comm == "workerd")
        .collect()
}

/// CPU time used so far by the runtime: every process of the group
/// (workerd, node, esbuild), and the workerd processes alone; milliseconds.
#[must_use]
pub fn runtime_cpu_ms(pgid: i32) -> (u64, u64) {
    let procs = all_processes();
    let group = select_group(&procs, pgid);
    let all: u64 = group.iter().map(|p| p.cpu_ms).sum();
    let workerd: u64 = group
        .iter()
        .filter(|p| p.comm == "workerd")
        .map(|p| p.cpu_ms)
        .sum();
    (all, workerd)
}

/// CPU time used so far by this process (the load generator), milliseconds.
#[must_use]
pub fn own_cpu_ms() -> u64 {
    let me = Pid::from_u32(std::process::id());
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[me]),
        true,
        ProcessRefreshKind::nothing().with_cpu(),
    );
    sys.process(me)
        .map_or(0, sysinfo::Process::accumulated_cpu_time)
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
    let procs = all_processes();
    let workerd = select_workerd(&procs, pgid);
    (workerd.iter().map(|p| p.rss_bytes).sum(), workerd.len())
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

    fn p(pid: u32, comm: &str, ppid: u32) -> ProcStat {
        ProcStat {
            pid,
            comm: comm.into(),
            ppid,
            cpu_ms: 10,
            rss_bytes: 100,
        }
    }

    #[test]
    fn workerd_of_the_leader_and_its_descendants() {
        let procs = vec![
            p(10, "node", 1),
            p(11, "node", 10),
            p(12, "workerd", 11),
            p(13, "workerd", 11),
            p(20, "workerd", 1), // someone else's runtime
        ];
        let mut got: Vec<u32> = select_workerd(&procs, 10).iter().map(|p| p.pid).collect();
        got.sort_unstable();
        assert_eq!(got, vec![12, 13]);
        assert_eq!(select_group(&procs, 10).len(), 4);
        assert!(select_group(&procs, -1).is_empty());
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
    fn this_process_is_seen_with_its_memory_and_cpu() {
        let me = std::process::id();
        // Burn some CPU so that the accumulated time cannot be zero.
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(std::hint::black_box(x), 1);
        let procs = all_processes();
        let mine = procs
            .iter()
            .find(|p| p.pid == me)
            .expect("this process is listed");
        assert!(mine.rss_bytes > 0);
        assert!(own_cpu_ms() > 0);
        let used = CpuMark::now(None).since(None);
        assert_eq!((used.runtime_ms, used.workerd_ms), (None, None));
    }
}

//! Closed-loop or paced load from plain threads, each with a blocking client.
//!
//! `clients` threads call `f(client, seq)` until `duration` has passed.
//! Unpaced, each thread sends its next request as soon as the last one is
//! answered. Paced (`rate` requests/s in all), client `c` sends request `i`
//! at `start + (c / clients + i) × clients / rate`, so the offered load is
//! the same whatever the route; a client that falls behind sends at once,
//! which is reported as the achieved rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Call<T> {
    /// The client thread.
    pub client: usize,
    /// Its request number.
    pub seq: usize,
    /// When it was sent, ms after the start of the run.
    pub sent_ms: f64,
    /// From sending to the whole answer read, ms.
    pub latency_ms: f64,
    /// What `f` returned.
    pub result: T,
}

/// All calls of a run.
#[derive(Debug, Clone)]
pub struct LoadRun<T> {
    /// Every call, by client then sequence.
    pub calls: Vec<Call<T>>,
    /// From the start to the last answer, seconds.
    pub elapsed_s: f64,
}

impl<T> LoadRun<T> {
    /// Calls per second over the run.
    #[must_use]
    pub fn rate(&self, count: usize) -> f64 {
        if self.elapsed_s <= 0.0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let n = count as f64;
        n / self.elapsed_s
    }
}

/// How the load is made.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Concurrent client threads.
    pub clients: usize,
    /// How long clients keep sending.
    pub duration: Duration,
    /// Total requests/s to offer; `None` sends as fast as answers come.
    pub rate: Option<f64>,
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
#[must_use]
pub fn bar(len: u64, prefix: &str, template: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(prefix.to_owned());
    pb
}

/// Runs the load; see the module doc.
pub fn run<T, F>(spec: LoadSpec, label: &str, f: F) -> LoadRun<T>
where
    T: Send,
    F: Fn(usize, usize) -> T + Sync,
{
    let clients = spec.clients.max(1);
    let duration_ms = u64::try_from(spec.duration.as_millis()).unwrap_or(u64::MAX);
    let pb = bar(
        duration_ms,
        label,
        "{prefix:>28} [{bar:30}] {elapsed:>4} {msg}",
    );
    let done = AtomicUsize::new(0);
    #[allow(clippy::cast_precision_loss)]
    let interval = spec
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(clients as f64 / r));
    let start = Instant::now();
    let deadline = start + spec.duration;
    let per_client: Vec<Vec<Call<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let f = &f;
                let pb = &pb;
                let done = &done;
                s.spawn(move || {
                    let mut out = Vec::new();
                    #[allow(clippy::cast_precision_loss)]
                    let offset = interval.map(|i| i.mul_f64(c as f64 / clients as f64));
                    for seq in 0.. {
                        if let (Some(interval), Some(offset)) = (interval, offset) {
                            let due = start
                                + offset
                                + interval
                                    .mul_f64(f64::from(u32::try_from(seq).unwrap_or(u32::MAX)));
                            if due >= deadline {
                                break;
                            }
                            if let Some(d) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(d);
                            }
                        }
                        let sent = Instant::now();
                        // Paced: the schedule decides (a late send still goes,
                        // up to a second duration); unpaced: the clock does.
                        let stop_at = if interval.is_some() {
                            deadline + spec.duration
                        } else {
                            deadline
                        };
                        if sent >= stop_at {
                            break;
                        }
                        let result = f(c, seq);
                        let end = Instant::now();
                        out.push(Call {
                            client: c,
                            seq,
                            sent_ms: (sent - start).as_secs_f64() * 1000.0,
                            latency_ms: (end - sent).as_secs_f64() * 1000.0,
                            result,
                        });
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_multiple_of(25) {
                            pb.set_position(
                                u64::try_from((end - start).as_millis()).unwrap_or(u64::MAX),
                            );
                            pb.set_message(format!("{n} requests"));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed_s = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    LoadRun {
        calls: per_client.into_iter().flatten().collect(),
        elapsed_s,
    }
}

/// Runs `f` over `items` on `threads` threads with a progress bar, keeping
/// the order of `items`.
pub fn parallel_map<I, T, F>(items: &[I], threads: usize, label: &str, f: F) -> Vec<T>
where
    I: Sync,
    T: Send,
    F: Fn(&I) -> T + Sync,
{
    let pb = bar(
        items.len() as u64,
        label,
        "{prefix:>28} [{bar:30}] {pos}/{len}",
    );
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let (f, next, pb) = (&f, &next, &pb);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                        pb.inc(1);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    pb.finish_and_clear();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_load_offers_the_rate() {
        let spec = LoadSpec {
            clients: 4,
            duration: Duration::from_millis(500),
            rate: Some(40.0),
        };
        let run = run(spec, "test", |c, i| (c, i));
        // 40/s for 0.5 s: 20 requests, 5 per client.
        assert_eq!(run.calls.len(), 20, "{:?}", run.calls.len());
        for c in 0..4 {
            assert_eq!(run.calls.iter().filter(|k| k.client == c).count(), 5);
        }
        assert!(run.calls.iter().all(|k| k.result == (k.client, k.seq)));
    }

    #[test]
    fn unpaced_load_runs_until_the_deadline() {
        let spec = LoadSpec {
            clients: 2,
            duration: Duration::from_millis(100),
            rate: None,
        };
        let run = run(spec, "test", |_, _| {
            std::thread::sleep(Duration::from_millis(10))
        });
        // At most 10 per client; at least the first of each, however slow
        // the machine.
        assert!((2..=22).contains(&run.calls.len()), "{}", run.calls.len());
        assert!(run.elapsed_s >= 0.1);
        assert!(run.calls.iter().all(|c| c.sent_ms < 100.0));
    }

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<u32> = (0..50).collect();
        let out = parallel_map(&items, 3, "test", |x| x * 2);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
    }
}

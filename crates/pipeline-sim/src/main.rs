//! Runs the simulator: `SIM_SEED=N` replays one seed with its trace;
//! `SIM_SECONDS=S` runs fresh seeds for S wall-clock seconds (a soak);
//! otherwise `SIM_SEEDS=N` seeds (default 2000) from `SIM_FIRST_SEED`.
//! `SIM_RATES=1,10,151` runs one hot key at each rate instead (uploads a
//! second, for `SIM_RATE_SECONDS`, default 30) and prints the per-key
//! figures the capacity model assumes, as a Markdown table.

use std::time::Instant;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    if let Ok(name) = std::env::var("SIM_PLANT") {
        match pipeline_sim::Bug::ALL
            .iter()
            .find(|b| format!("{b:?}") == name)
        {
            Some(b) => pipeline_sim::plant(Some(*b)),
            None => {
                eprintln!(
                    "SIM_PLANT: unknown bug {name}; one of {:?}",
                    pipeline_sim::Bug::ALL
                );
                std::process::exit(2);
            }
        }
    }
    if let Ok(rates) = std::env::var("SIM_RATES") {
        run_rates(&rates);
        return;
    }
    if let Some(seed) = env_u64("SIM_SEED") {
        let mut cfg = pipeline_sim::SimConfig::from_seed(seed);
        if let Some(n) = env_u64("SIM_TRACE") {
            cfg.trace_lines = n as usize;
        }
        println!("{cfg:?}");
        match pipeline_sim::run_with(cfg) {
            Ok(r) => println!("seed {seed}: ok {r:?}"),
            Err(f) => {
                println!("{f}");
                std::process::exit(1);
            }
        }
        return;
    }
    let first = env_u64("SIM_FIRST_SEED").unwrap_or(0);
    let deadline = env_u64("SIM_SECONDS");
    let count = env_u64("SIM_SEEDS").unwrap_or(2000);
    let started = Instant::now();
    let mut totals = pipeline_sim::Report::default();
    let mut runs = 0u64;
    let mut seed = first;
    loop {
        match deadline {
            Some(s) if started.elapsed().as_secs() >= s => break,
            None if runs >= count => break,
            _ => {}
        }
        match pipeline_sim::run(seed) {
            Ok(r) => {
                totals.events += r.events;
                totals.simulated_ms += r.simulated_ms;
                totals.writes += r.writes;
                totals.committed += r.committed;
                totals.superseded += r.superseded;
                totals.failed += r.failed;
                totals.r2_writes += r.r2_writes;
                totals.webhooks += r.webhooks;
                totals.events_sent += r.events_sent;
                let f = &mut totals.faults;
                f.crashes += r.faults.crashes;
                f.r2_transient += r.faults.r2_transient;
                f.r2_permanent += r.faults.r2_permanent;
                f.queue_send_failures += r.faults.queue_send_failures;
                f.duplicates += r.faults.duplicates;
                f.backlogged += r.faults.backlogged;
                f.outages += r.faults.outages;
                f.store_failures += r.faults.store_failures;
                f.late_alarms += r.faults.late_alarms;
                f.double_alarms += r.faults.double_alarms;
                f.dead_letters += r.faults.dead_letters;
                f.notify_failures += r.faults.notify_failures;
                f.push_acks_lost += r.faults.push_acks_lost;
                f.sources_compacted += r.faults.sources_compacted;
            }
            Err(f) => {
                println!("{f}");
                std::process::exit(1);
            }
        }
        runs += 1;
        seed += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulated {runs} seeds ({first}..{}) in {secs:.1} s: {} events, {:.1} simulated hours, {} writes ({} committed, {} superseded, {} failed), {} R2 writes, {} webhook events, {} commit events",
        first + runs,
        totals.events,
        totals.simulated_ms as f64 / 3_600_000.0,
        totals.writes,
        totals.committed,
        totals.superseded,
        totals.failed,
        totals.r2_writes,
        totals.webhooks,
        totals.events_sent
    );
    println!("faults injected: {:?}", totals.faults);
    println!("{runs} passed, 0 failed");
}

/// One hot key at each of `rates` (comma-separated uploads a second).
fn run_rates(rates: &str) {
    let seconds = env_u64("SIM_RATE_SECONDS").unwrap_or(30) as i64;
    let seed = env_u64("SIM_FIRST_SEED").unwrap_or(1);
    println!(
        "one hot key, {seconds} simulated s of writing per rate, seed {seed}, no faults, R2 latency 10-200 ms with a 5 % tail to {} ms, queue batches of 100 messages or 1 s (the upload consumer's settings)",
        pipeline_sim::rates::SLOWEST_R2_MS
    );
    println!();
    println!("| uploads/s | uploads | R2 writes | max R2 writes in 1 s | min gap ms | uploads per R2 write | commit lag p50 / p99 / max ms | visible after p50 / p99 / max ms | scheduler calls/s mean / max | within one object's ~1,000 requests/s | model check | wall s |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |");
    let mut failed = false;
    for rate in rates
        .split(',')
        .filter_map(|r| r.trim().parse::<u64>().ok())
    {
        let started = Instant::now();
        match pipeline_sim::rates::run_rate(seed, rate, seconds * 1000) {
            Ok(r) => {
                let check = match r.check() {
                    Ok(()) => "met".to_string(),
                    Err(unmet) => {
                        failed = true;
                        format!("NOT met: {}", unmet.join("; "))
                    }
                };
                println!(
                    "| {rate} | {} | {} | {} | {} | {:.1} | {} / {} / {} | {} / {} / {} | {:.1} / {} | {} | {check} | {:.1} |",
                    r.uploads,
                    r.r2_writes,
                    r.max_r2_writes_in_1s,
                    r.min_r2_gap_ms.map_or("-".into(), |g| g.to_string()),
                    r.coalescing(),
                    r.commit_lag_ms[0],
                    r.commit_lag_ms[1],
                    r.commit_lag_ms[2],
                    r.visible_after_ms[0],
                    r.visible_after_ms[1],
                    r.visible_after_ms[2],
                    r.scheduler_calls_per_s,
                    r.max_scheduler_calls_in_1s,
                    if r.within_object_limit() { "yes" } else { "NO" },
                    started.elapsed().as_secs_f64()
                );
            }
            Err(f) => {
                println!("{f}");
                std::process::exit(1);
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

//! `pipeline-bench`: see the crate docs and `docs/BENCHMARKS.md`.
//!
//! Exit status: 0 when every functional check passed (targets met or not),
//! 1 when something is functionally broken (a wrong final object, an id
//! that never ends, writes spaced under 1000 ms), 2 when the run could not
//! start (no Worker, no benchmark routes, bad flags).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use pipeline_bench::cost::{self, CostConfig, CostResult};
use pipeline_bench::ctx::Ctx;
use pipeline_bench::env;
use pipeline_bench::ingest::{self, IngestConfig};
use pipeline_bench::large::{self, LargeConfig};
use pipeline_bench::report::{self, Config, Report, Tool, WorkerInfo};
use pipeline_bench::stats_scale::{self, StatsScaleConfig};
use pipeline_bench::storm::{self, StormConfig};
use pipeline_bench::wasm;
use pipeline_client::harness::{repo_root, LocalWorker, WorkerOptions};
use pipeline_client::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Ingest,
    Storm,
    Large,
    Wasm,
    Stats,
    Cost,
}

/// Benchmarks the R2 hot-key write pipeline against the naive direct write
/// and the synchronous (rate-limited) write, on the real Worker.
///
/// By default it starts the Worker under `wrangler dev` itself (the build in
/// build/ must have the benchmark routes: `PIPELINE_TEST_ROUTES=1 bash
/// scripts/build.sh`, or pass --build). Sizes left unset take the default
/// shown, or the smoke size with --smoke.
#[derive(Debug, Parser)]
#[command(name = "pipeline-bench", version, about, long_about)]
#[allow(clippy::struct_excessive_bools)]
struct Args {
    /// Target a running Worker (built with the benchmark routes) instead of
    /// starting one. Runtime memory is then not measured.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url.
    #[arg(long, env = "PIPELINE_BENCH_TOKEN", default_value = "test-token")]
    token: String,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-results/latest.json")]
    out: PathBuf,
    /// Tiny sizes (about 30 s in all): every scenario end to end, for the
    /// test command.
    #[arg(long)]
    smoke: bool,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ingest,storm,large,wasm,cost,stats"
    )]
    scenarios: Vec<Scenario>,
    /// Before running, build the production Worker (measured by the wasm
    /// scenario), then the benchmark build into build/ (both with wasm-opt).
    /// This rewrites build/: not while another wrangler dev serves it.
    #[arg(long)]
    build: bool,
    /// The wasm file to measure [default: build/index_bg.wasm, or the
    /// production build made by --build].
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Ingest: concurrent clients [default: 8; smoke: 2].
    #[arg(long)]
    ingest_clients: Option<usize>,
    /// Ingest: measured seconds per route [default: 8; smoke: 1].
    #[arg(long)]
    ingest_seconds: Option<f64>,
    /// Ingest: warm-up seconds per route [default: 1; smoke: 0.3].
    #[arg(long)]
    ingest_warmup_seconds: Option<f64>,
    /// Ingest: keys of the hot-key route [default: 16; smoke: 2].
    #[arg(long)]
    ingest_hot_keys: Option<usize>,
    /// Ingest: body bytes.
    #[arg(long, default_value_t = 1024)]
    ingest_body_bytes: usize,
    /// Ingest: uploads per pipeline route whose terminal state is checked
    /// (0: all) [default: 200; smoke: 0].
    #[arg(long)]
    ingest_check_ids: Option<usize>,
    /// Ingest: lines per `POST /batch`, 1 to 100 [default: 100; smoke: 5].
    #[arg(long)]
    ingest_batch_lines: Option<usize>,
    /// Storm: hot keys [default: 16; smoke: 2].
    #[arg(long)]
    storm_keys: Option<usize>,
    /// Storm: concurrent clients [default: 32; smoke: 4].
    #[arg(long)]
    storm_clients: Option<usize>,
    /// Storm: seconds per approach [default: 20; smoke: 3].
    #[arg(long)]
    storm_seconds: Option<f64>,
    /// Storm: offered requests/s in all, the same for every approach; 0
    /// sends as fast as answers come [default: 100; smoke: 20].
    #[arg(long)]
    storm_rate: Option<f64>,
    /// Storm: body bytes.
    #[arg(long, default_value_t = 1024)]
    storm_body_bytes: usize,
    /// Large objects: sizes in MiB, comma-separated [default: 10,50; smoke: 1].
    #[arg(long, value_delimiter = ',')]
    large_mib: Option<Vec<u64>>,
    /// Large objects: pipeline uploads per size [default: 2; smoke: 1].
    #[arg(long)]
    large_reps: Option<usize>,
    /// Stats scale: source rows at each point, comma-separated
    /// [default: 100,10000,100000; smoke: 10,100].
    #[arg(long, value_delimiter = ',')]
    stats_sources: Option<Vec<u64>>,
    /// Cost: uploads per workload and approach [default: 300; smoke: 4].
    #[arg(long)]
    cost_uploads: Option<usize>,
    /// Cost: offered uploads/s [default: 50; smoke: 20].
    #[arg(long)]
    cost_rate: Option<f64>,
    /// Cost: concurrent clients [default: 8; smoke: 2].
    #[arg(long)]
    cost_clients: Option<usize>,
    /// Cost: hot keys of the storm workload [default: the storm's keys].
    #[arg(long)]
    cost_storm_keys: Option<usize>,
    /// Cost: quiet seconds that end a pipeline run [default: 2.5; smoke: 1.2].
    #[arg(long)]
    cost_quiet_seconds: Option<f64>,
    /// Print the cost scenario's Markdown table from a saved JSON report
    /// and exit (nothing is run).
    #[arg(long)]
    cost_table: Option<PathBuf>,
    /// Longest wait for one upload to reach a terminal state, seconds.
    #[arg(long, default_value_t = 90)]
    commit_timeout: u64,
    /// Keep the runtime's persisted state (target/bench/) after a good run.
    #[arg(long)]
    keep_state: bool,
}

fn config(a: &Args) -> Config {
    let s = a.smoke;
    let pick =
        |v: Option<usize>, normal: usize, smoke: usize| v.unwrap_or(if s { smoke } else { normal });
    let pickf =
        |v: Option<f64>, normal: f64, smoke: f64| v.unwrap_or(if s { smoke } else { normal });
    let rate = pickf(a.storm_rate, 100.0, 20.0);
    let storm_keys = pick(a.storm_keys, 16, 2).max(1);
    Config {
        smoke: s,
        scenarios: a
            .scenarios
            .iter()
            .map(|x| format!("{x:?}").to_lowercase())
            .collect(),
        ingest: IngestConfig {
            clients: pick(a.ingest_clients, 8, 2),
            seconds: pickf(a.ingest_seconds, 8.0, 1.0),
            warmup_seconds: pickf(a.ingest_warmup_seconds, 1.0, 0.3),
            hot_keys: pick(a.ingest_hot_keys, 16, 2),
            body_bytes: a.ingest_body_bytes,
            check_ids: pick(a.ingest_check_ids, 200, 0),
            batch_lines: pick(a.ingest_batch_lines, ingest::BATCH_LINES, 5),
        },
        storm: StormConfig {
            keys: pick(a.storm_keys, 16, 2).max(1),
            clients: pick(a.storm_clients, 32, 4).max(1),
            seconds: pickf(a.storm_seconds, 20.0, 3.0),
            rate: (rate > 0.0).then_some(rate),
            body_bytes: a.storm_body_bytes,
        },
        large: LargeConfig {
            sizes_mib: a
                .large_mib
                .clone()
                .unwrap_or_else(|| if s { vec![1] } else { vec![10, 50] }),
            reps: pick(a.large_reps, 2, 1),
        },
        stats_scale: StatsScaleConfig {
            sources: a.stats_sources.clone().unwrap_or_else(|| {
                if s {
                    vec![10, 100]
                } else {
                    vec![100, 10_000, 100_000]
                }
            }),
            reads: pick(None, 30, 5),
        },
        cost: CostConfig {
            uploads: pick(a.cost_uploads, 300, 4).max(1),
            rate: pickf(a.cost_rate, 50.0, 20.0).max(0.1),
            clients: pick(a.cost_clients, 8, 2).max(1),
            storm_keys: a.cost_storm_keys.unwrap_or(storm_keys).max(1),
            body_bytes: 1024,
            quiet_s: pickf(a.cost_quiet_seconds, 2.5, 1.2),
        },
        commit_timeout_s: a.commit_timeout,
    }
}

fn run_build(repo: &Path, test_routes: bool) -> Result<(), String> {
    let mut cmd = Command::new("bash");
    cmd.arg("scripts/build.sh")
        .current_dir(repo)
        .env_remove("PIPELINE_SKIP_BUILD")
        .env_remove("PIPELINE_FAST_BUILD")
        .env_remove("PIPELINE_TEST_ROUTES");
    if test_routes {
        cmd.env("PIPELINE_TEST_ROUTES", "1");
    }
    eprintln!(
        "building the {} Worker (bash scripts/build.sh)…",
        if test_routes {
            "benchmark"
        } else {
            "production"
        }
    );
    let status = cmd
        .status()
        .map_err(|e| format!("running scripts/build.sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("scripts/build.sh failed: {status}"))
    }
}

/// Builds as --build says; returns the production wasm's copy.
fn build_both(repo: &Path) -> Result<PathBuf, String> {
    run_build(repo, false)?;
    let dir = repo.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let prod = dir.join("index_bg.production.wasm");
    std::fs::copy(repo.join("build/index_bg.wasm"), &prod)
        .map_err(|e| format!("copying the production wasm: {e}"))?;
    run_build(repo, true)?;
    Ok(prod)
}

/// Starts the Worker; tries again (on another free port) when wrangler
/// could not start, e.g. because the port it was given was taken meanwhile.
fn start_worker(repo: &Path, run: &str) -> Result<LocalWorker, String> {
    let mut last = String::new();
    for attempt in 1..=3 {
        let state = repo
            .join("target/bench")
            .join(format!("state-{run}-{attempt}"));
        match LocalWorker::start(WorkerOptions::new("bench").persist_dir(&state)) {
            Ok(w) => return Ok(w),
            Err(e) => {
                last = e.to_string();
                eprintln!("  wrangler dev did not start (attempt {attempt} of 3)");
            }
        }
    }
    Err(last)
}

fn check_bench_routes(client: &Client) -> Result<(), String> {
    let resp = client
        .raw("POST", "/_bench/enqueue", &[], Some(b""))
        .map_err(|e| format!("POST /_bench/enqueue: {e}"))?;
    match resp.status {
        202 => Ok(()),
        404 => Err(
            "the Worker has no benchmark routes (POST /_bench/enqueue is 404): build it with \
             `PIPELINE_TEST_ROUTES=1 bash scripts/build.sh`, or pass --build"
                .into(),
        ),
        401 => Err("POST /_bench/enqueue is 401: wrong --token".into()),
        s => Err(format!(
            "POST /_bench/enqueue answered {s}: {}",
            resp.text()
        )),
    }
}

fn write_json(path: &Path, report: &Report) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn run_id() -> String {
    let now = chrono::Utc::now();
    format!("{}-{}", now.format("%Y%m%dT%H%M%S"), std::process::id())
}

/// `--cost-table`: the Markdown of a saved report's cost scenario, priced
/// with this build's prices and billing rules.
fn print_cost_table(path: &Path) -> ExitCode {
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()))
        .and_then(|v| {
            let mut c: CostResult = serde_json::from_value(v["cost"].clone())
                .map_err(|e| format!("no cost scenario: {e}"))?;
            c.reprice();
            let ingest = v["ingest"]["routes"].as_array().and_then(|rs| {
                rs.iter()
                    .find(|r| r["name"] == "pipeline unique keys")
                    .and_then(|r| r["throughput_vs_enqueue"].as_f64())
            });
            Ok((c, ingest))
        });
    match parsed {
        Ok((c, ingest)) => {
            println!("{}", cost::markdown(&c, &cost::goals(&c, ingest)));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::too_many_lines)]
fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(p) = &args.cost_table {
        return print_cost_table(p);
    }
    let cfg = config(&args);
    let repo = repo_root();
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let run = run_id();

    let mut wasm_path = args.wasm.clone();
    let mut wasm_build: Option<String> = None;
    if args.build {
        if args.url.is_some() {
            eprintln!("--build builds the local Worker; it makes no sense with --url");
            return ExitCode::from(2);
        }
        match build_both(&repo) {
            Ok(prod) => {
                if wasm_path.is_none() {
                    wasm_path = Some(prod);
                    wasm_build = Some(
                        "production build (scripts/build.sh: wasm-opt, no test routes)".into(),
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(p) = &args.wasm {
        wasm_build = Some(format!("given with --wasm {}", p.display()));
    }
    let wasm_path = wasm_path.unwrap_or_else(|| repo.join("build/index_bg.wasm"));

    // The Worker: ours under wrangler dev, or the one at --url.
    let needs_worker = cfg.scenarios.iter().any(|s| s != "wasm");
    let mut local: Option<LocalWorker> = None;
    let (client, info) = match (&args.url, needs_worker) {
        (Some(url), _) => (
            Client::new(url, Some(&args.token)),
            WorkerInfo {
                url: url.clone(),
                started_by_bench: false,
                log: None,
            },
        ),
        (None, true) => {
            eprintln!("starting the Worker under wrangler dev…");
            let t = Instant::now();
            match start_worker(&repo, &run) {
                Ok(w) => {
                    eprintln!(
                        "  ready at {} in {:.1} s",
                        w.base_url(),
                        t.elapsed().as_secs_f64()
                    );
                    let c = w.client();
                    let info = WorkerInfo {
                        url: w.base_url(),
                        started_by_bench: true,
                        log: Some(w.log_path().display().to_string()),
                    };
                    local = Some(w);
                    (c, info)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        (None, false) => (
            Client::new("http://127.0.0.1:9", None),
            WorkerInfo {
                url: String::new(),
                started_by_bench: false,
                log: None,
            },
        ),
    };
    if needs_worker {
        if let Err(e) = check_bench_routes(&client) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }

    let ctx = Ctx::new(
        client,
        format!("bench/{run}"),
        local.as_ref().and_then(LocalWorker::pgid),
        Duration::from_secs(cfg.commit_timeout_s),
    );
    let settings = std::fs::read_to_string(repo.join("wrangler.toml"))
        .map(|t| env::parse_settings(&t))
        .unwrap_or_default();
    let has = |s: &str| cfg.scenarios.iter().any(|x| x == s);

    let wasm = if has("wasm") {
        match wasm::run(&wasm_path, wasm_build.as_deref()) {
            Ok(w) => Some(w),
            Err(e) => {
                ctx.fail(format!("wasm: reading {}: {e}", wasm_path.display()));
                None
            }
        }
    } else {
        None
    };
    // Large objects first: their idle memory is then the runtime's own, not
    // that of the thousands of per-key objects the other scenarios create.
    let large = has("large").then(|| large::run(&ctx, &cfg.large));
    // Stats reads next, while the shards hold only what large wrote (its
    // points start at 100 sources) and nothing else loads the runtime.
    let stats_scale = has("stats").then(|| stats_scale::run(&ctx, &cfg.stats_scale));
    // Costs before ingest: ingest's batch route leaves a long backlog.
    let topo = std::fs::read_to_string(repo.join("wrangler.toml"))
        .map(|t| cost::topology(&t))
        .unwrap_or_default();
    let cost_result = has("cost").then(|| cost::run(&ctx, &cfg.cost, &topo));
    // The storm before ingest too: ingest's batch route can leave a backlog
    // of unique-key commits that would compete with the storm's.
    let storm = has("storm").then(|| storm::run(&ctx, &cfg.storm));
    let ingest = has("ingest").then(|| ingest::run(&ctx, &cfg.ingest));

    if let Some(w) = local.as_mut() {
        w.stop();
    }
    let failures = ctx.failures();
    let mut targets = report::targets(
        ingest.as_ref(),
        storm.as_ref(),
        large.as_ref(),
        settings.max_batch_timeout_s,
    );
    let ingest_vs_enqueue = ingest
        .as_ref()
        .and_then(|i| i.route("pipeline unique keys"))
        .and_then(|r| r.throughput_vs_enqueue);
    let cost_goals = cost_result
        .as_ref()
        .map(|c| cost::goals(c, ingest_vs_enqueue))
        .unwrap_or_default();
    targets.extend(report::cost_targets(&cost_goals));
    let cost_markdown = cost_result.as_ref().map(|c| cost::markdown(c, &cost_goals));
    let mut report = Report {
        tool: Tool {
            name: "pipeline-bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command_line: std::env::args().collect(),
        },
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_s: started.elapsed().as_secs_f64(),
        worker: info,
        machine: env::machine(),
        versions: env::versions(&repo),
        settings,
        config: cfg,
        ingest,
        storm,
        large,
        wasm,
        stats_scale,
        cost: cost_result,
        cost_goals,
        cost_markdown,
        targets,
        functional_failures: failures.clone(),
        table: String::new(),
    };
    report.table = report::render(&report);
    println!("{}", report.table);
    if let Err(e) = write_json(&args.out, &report) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Some(storm) = &report.storm {
        match pipeline_bench::charts::write_storm(&args.out, storm) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => eprintln!("storm charts not written: {e}"),
        }
    }
    eprintln!(
        "wrote {} ({:.0} s in all)",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(w) = &local {
        if failures.is_empty() && !args.keep_state {
            let dir = w.persist_dir().to_path_buf();
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(dir.with_extension("env"));
            let _ = std::fs::remove_file(w.log_path());
        } else {
            eprintln!(
                "kept the runtime's state {} and log {}",
                w.persist_dir().display(),
                w.log_path().display()
            );
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

//! Scenario 3: large objects through the staged path. Each body is
//! uploaded (`202`, streamed into staging), committed by the scheduler
//! (copied from staging), and read back; the runtime's resident memory is
//! sampled every 50 ms against its idle level to show the bodies stream.
//!
//! The local runtime's R2 keeps buffers of about an object's size once it
//! has stored one (they stay allocated, so its RSS grows once per new
//! largest size, whoever writes). Each size is therefore first put straight
//! into R2 through the naive route and read back, and that growth is
//! reported as the runtime's own; the pipeline's growth is measured after
//! it, for a first upload and again for later ones (the runtime's copy
//! path allocates its own buffers on first use too). A pipeline that held
//! a body in Wasm memory would still show it: the naive route never passes
//! the body through Wasm.

use std::time::{Duration, Instant};

use pipeline_client::{encode_key, GetOptions, PutOptions, UploadState};
use serde::Serialize;

use crate::ctx::{body, Ctx};
use crate::rss::{self, RssReport, Sampler};
use crate::stats::{mb_per_s, parse_ms};

/// How often resident memory is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Sizes of the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct LargeConfig {
    /// Object sizes, MiB.
    pub sizes_mib: Vec<u64>,
    /// Pipeline uploads per size, one after the other.
    pub reps: usize,
}

/// One object.
#[derive(Debug, Clone, Serialize)]
pub struct LargeObject {
    /// Bytes.
    pub size_bytes: u64,
    /// 1 for the first upload of this size, 2 for the next, …
    pub rep: usize,
    /// The `PUT` until its `202`, seconds.
    pub upload_s: f64,
    /// Upload rate, MB/s (10^6 B/s).
    pub upload_mb_s: f64,
    /// From sending the `PUT` to seeing `committed`, seconds.
    pub put_to_committed_s: f64,
    /// Size ÷ that, MB/s.
    pub end_to_end_mb_s: f64,
    /// `committed_at − accepted_at` as the Worker stamped them, ms.
    pub server_commit_lag_ms: Option<i64>,
    /// The `GET` of the final object, seconds.
    pub download_s: f64,
    /// Download rate, MB/s.
    pub download_mb_s: f64,
    /// The object read back is the one sent.
    pub correct: bool,
    /// The naive direct put of the same bytes (first rep only), seconds.
    pub direct_put_s: Option<f64>,
    /// Its rate, MB/s.
    pub direct_put_mb_s: Option<f64>,
    /// Runtime RSS before it, bytes.
    pub direct_idle_rss_bytes: Option<u64>,
    /// Peak runtime RSS during it and a GET of it.
    pub direct_rss: Option<RssReport>,
    /// That peak minus idle: the local runtime's own cost of storing and
    /// reading an object of this size (its R2's buffers), bytes.
    pub direct_growth_bytes: Option<i64>,
    /// Runtime RSS before the pipeline upload (mean over 1 s), bytes.
    pub idle_rss_bytes: Option<u64>,
    /// Peak runtime RSS from the `PUT` to `committed`.
    pub write_rss: Option<RssReport>,
    /// Peak runtime RSS during the `GET`.
    pub read_rss: Option<RssReport>,
    /// Write-path peak minus idle, bytes.
    pub write_growth_bytes: Option<i64>,
    /// Read-path peak minus idle, bytes.
    pub read_growth_bytes: Option<i64>,
    /// Write-path growth as a percentage of the object's size.
    pub write_growth_pct_of_size: Option<f64>,
}

/// The scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LargeResult {
    /// Its inputs.
    pub config: LargeConfig,
    /// One entry per size.
    pub objects: Vec<LargeObject>,
    /// Whether memory was measured (only when the bench started the Worker).
    pub memory_measured: bool,
}

/// Lets the previous step's garbage settle, then takes the idle level
/// (mean over 1 s).
fn idle_rss(ctx: &Ctx) -> Option<u64> {
    std::thread::sleep(Duration::from_secs(1));
    ctx.pgid.map(|pgid| {
        let s = Sampler::start(pgid, SAMPLE_EVERY);
        std::thread::sleep(Duration::from_secs(1));
        s.finish().mean_bytes
    })
}

#[allow(clippy::cast_possible_wrap)]
fn growth(peak: Option<&RssReport>, idle: Option<u64>) -> Option<i64> {
    Some(peak?.peak_bytes as i64 - idle? as i64)
}

fn one(ctx: &Ctx, n: usize, mib: u64, rep: usize) -> LargeObject {
    let size = mib * 1024 * 1024;
    let key = ctx.key(&format!("large/{n}-{mib}MiB-{rep}"));
    let data = body(
        &format!("large {mib} MiB "),
        usize::try_from(size).unwrap_or(0),
    );
    // First (once per size) the same bytes straight into R2 (the naive
    // route, which streams the request body into the bucket) and read back:
    // what the local runtime itself grows by to store and serve an object of
    // this size, whoever sends it. Its buffers stay allocated afterwards, so
    // the pipeline's own growth is measured next, against the new idle level.
    let mut direct_s = None;
    let mut direct_idle = None;
    let mut direct_rss = None;
    if rep == 1 {
        let direct_key = ctx.key(&format!("large/{n}-{mib}MiB-direct"));
        direct_idle = idle_rss(ctx);
        let sampler = ctx.pgid.map(|pgid| Sampler::start(pgid, SAMPLE_EVERY));
        let t = Instant::now();
        let direct = ctx.client.raw(
            "PUT",
            &format!("/_bench/direct/{}", encode_key(&direct_key)),
            &[],
            Some(&data),
        );
        direct_s = Some(t.elapsed().as_secs_f64());
        let direct_read = ctx.client.get_object(&direct_key, &GetOptions::default());
        direct_rss = sampler.map(Sampler::finish);
        match &direct {
            Ok(r) if r.status == 201 => {}
            Ok(r) => ctx.fail(format!(
                "large {mib} MiB: direct put answered {}: {}",
                r.status,
                r.text()
            )),
            Err(e) => ctx.fail(format!("large {mib} MiB: direct put: {e}")),
        }
        if !matches!(&direct_read, Ok(o) if o.body == data) {
            ctx.fail(format!(
                "large {mib} MiB: the direct put did not read back as sent"
            ));
        }
    }

    let idle = idle_rss(ctx);
    let sampler = ctx.pgid.map(|pgid| Sampler::start(pgid, SAMPLE_EVERY));
    let t0 = Instant::now();
    let accepted = ctx.client.put_object(
        &key,
        &data,
        &PutOptions::content_type("application/octet-stream"),
    );
    let upload_s = t0.elapsed().as_secs_f64();
    let status = match &accepted {
        Ok(a) => match ctx.terminal(&a.id) {
            Ok(st) => Some(st),
            Err(e) => {
                ctx.fail(format!("large {mib} MiB: {e}"));
                None
            }
        },
        Err(e) => {
            ctx.fail(format!("large {mib} MiB: upload refused: {e}"));
            None
        }
    };
    let put_to_committed_s = t0.elapsed().as_secs_f64();
    let write_rss = sampler.map(Sampler::finish);
    let committed = status
        .as_ref()
        .filter(|s| s.state == UploadState::Committed);
    if let Some(s) = status
        .as_ref()
        .filter(|s| s.state != UploadState::Committed)
    {
        ctx.fail(format!(
            "large {mib} MiB: ended {} ({:?})",
            s.state.as_str(),
            s.error
        ));
    }
    let server_commit_lag_ms = committed
        .and_then(|s| Some(parse_ms(s.committed_at.as_deref()?)? - parse_ms(&s.accepted_at)?));

    let sampler = ctx.pgid.map(|pgid| Sampler::start(pgid, SAMPLE_EVERY));
    let t1 = Instant::now();
    let read = ctx.client.get_object(&key, &GetOptions::default());
    let download_s = t1.elapsed().as_secs_f64();
    let read_rss = sampler.map(Sampler::finish);
    let correct = match &read {
        Ok(obj) => {
            let id = accepted.as_ref().ok().map(|a| a.id.as_str());
            obj.body == data && obj.meta("upload-id") == id
        }
        Err(_) => false,
    };
    if !correct {
        ctx.fail(format!(
            "large {mib} MiB: the object read back is not the one sent ({})",
            read.as_ref()
                .map_or_else(ToString::to_string, |o| format!("{} bytes", o.body.len()))
        ));
    }
    let write_growth_bytes = growth(write_rss.as_ref(), idle);
    #[allow(clippy::cast_precision_loss)]
    let write_growth_pct_of_size = write_growth_bytes.map(|g| g as f64 * 100.0 / size as f64);
    let o = LargeObject {
        direct_put_s: direct_s,
        direct_put_mb_s: direct_s.map(|d| mb_per_s(size, d)),
        direct_idle_rss_bytes: direct_idle,
        direct_growth_bytes: growth(direct_rss.as_ref(), direct_idle),
        direct_rss,
        size_bytes: size,
        rep,
        upload_s,
        upload_mb_s: mb_per_s(size, upload_s),
        put_to_committed_s,
        end_to_end_mb_s: mb_per_s(size, put_to_committed_s),
        server_commit_lag_ms,
        download_s,
        download_mb_s: mb_per_s(size, download_s),
        correct,
        idle_rss_bytes: idle,
        read_growth_bytes: growth(read_rss.as_ref(), idle),
        write_rss,
        read_rss,
        write_growth_bytes,
        write_growth_pct_of_size,
    };
    eprintln!(
        "  {mib:>4} MiB #{rep}: direct put growth {}; pipeline: upload {:.1} MB/s, PUT→committed {:.1} MB/s, download {:.1} MB/s, write-path RSS growth {}",
        o.direct_growth_bytes
            .map_or_else(|| "-".to_owned(), |g| format!("{:.1} MiB", mib_f(g))),
        o.upload_mb_s,
        o.end_to_end_mb_s,
        o.download_mb_s,
        o.write_growth_bytes
            .map_or_else(|| "not measured".to_owned(), |g| format!("{:.1} MiB", mib_f(g)))
    );
    o
}

/// Takes one small staged body through the whole path first, so that
/// the one-time costs (Durable Object start-up, R2 and queue set-up, code
/// first run) do not count as growth of the first measured object.
fn warm_up(ctx: &Ctx) {
    let key = ctx.key("large/warm-up");
    let data = body("large warm-up ", 256 * 1024);
    let opts = PutOptions::content_type("application/octet-stream");
    match ctx.client.put_object(&key, &data, &opts) {
        Ok(a) => {
            if let Err(e) = ctx.terminal(&a.id) {
                ctx.fail(format!("large warm-up: {e}"));
            }
            let _ = ctx.client.get_object(&key, &GetOptions::default());
        }
        Err(e) => ctx.fail(format!("large warm-up: upload refused: {e}")),
    }
}

/// Bytes as MiB.
#[must_use]
pub fn mib_f(bytes: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / (1024.0 * 1024.0)
}

/// Runs the scenario.
pub fn run(ctx: &Ctx, cfg: &LargeConfig) -> LargeResult {
    eprintln!(
        "scenario 3: large objects ({} MiB), runtime memory {}",
        cfg.sizes_mib
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        if ctx.pgid.is_some() {
            "sampled every 50 ms"
        } else {
            "not measured (--url)"
        }
    );
    if let Some(pgid) = ctx.pgid {
        let (bytes, n) = rss::runtime_rss(pgid);
        if n == 0 {
            eprintln!("  warning: no workerd process found in process group {pgid}");
        } else {
            eprintln!(
                "  {n} workerd processes, {:.1} MiB resident",
                mib_f(i64::try_from(bytes).unwrap_or(0))
            );
        }
    }
    warm_up(ctx);
    let mut objects = Vec::new();
    for (n, &m) in cfg.sizes_mib.iter().enumerate() {
        for rep in 1..=cfg.reps.max(1) {
            objects.push(one(ctx, n, m, rep));
        }
    }
    LargeResult {
        config: cfg.clone(),
        objects,
        memory_measured: ctx.pgid.is_some(),
    }
}

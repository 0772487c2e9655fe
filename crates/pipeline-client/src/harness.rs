//! [`LocalWorker`]: the real Worker under `wrangler dev`, for end-to-end tests.
//!
//! Never a mock: the tests talk HTTP to workerd running the built Worker with
//! local Queues, Durable Objects, R2 and alarms persisted under a directory of
//! their own. `wrangler dev` is node, node, two workerd processes and esbuild,
//! so it is started in a process group of its own (`setsid`) and stopped by
//! signalling that group by id. Three layers make sure none outlives the tests:
//! `Drop`, a libc `atexit` hook (for workers held in statics, which are never
//! dropped), and the group ids appended to `<repo>/target/e2e/pids` for the
//! test script to clean up after a crashed test binary.
//!
//! Variables: each `--var K:V` is passed on the command line. Wrangler
//! (4.86.0, `getBindings2`) merges bindings as `{...config vars, ...secrets
//! from .dev.vars, ...--var}`, so a `--var` wins over `.dev.vars`. To make a
//! variable *absent* (e.g. a worker with no `API_TOKEN`), the harness also
//! passes `--env-file` naming an empty file of its own: when env files are
//! given, wrangler does not read `.dev.vars` at all (`getVarsForDev`).
//! Checked by hand with a `.dev.vars` holding `API_TOKEN=dev-token`: plain
//! `wrangler dev` binds `dev-token`; with `--var API_TOKEN:test-token` it binds
//! `test-token`; with the empty `--env-file` and no `--var` it binds nothing;
//! `--var API_TOKEN:` binds the empty string. The end-to-end suite keeps
//! checking it (`routing_auth_cors.rs`: the dev token is refused).
//!
//! Commit events: production binds no consumer for the `EVENTS` queue
//! (`r2-pipeline-events`). [`WorkerOptions::consume_events`] runs
//! `wrangler dev --config` with a generated copy of `wrangler.toml` that
//! adds one `[[queues.consumers]]` section for it, so a `test-routes` build
//! records the events for `GET /_test/events`. Wrangler (4.86.0,
//! `normalizeAndValidateMainField`) resolves `main` against the config
//! file's directory, so the copy is written at the repository root as
//! `.wrangler-e2e-<unique>.toml` (ignored by git) and removed when the
//! worker stops, or by the `atexit` hook for workers held in statics.
//!
//! Sharded upload queues: [`WorkerOptions::upload_queues`] with N > 1 adds,
//! in the same generated copy, the bindings `UPLOADS_1` … `UPLOADS_{N-1}`
//! (queues `r2-pipeline-uploads-1`, …) with a consumer each, configured as
//! the deployed upload consumer, and passes `--var UPLOAD_QUEUES:N`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::Client;

/// The token the harness configures by default.
pub const DEFAULT_TOKEN: &str = "test-token";

/// Why the harness could not run the Worker.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The Worker has not been built (`build/worker/shim.mjs` is missing).
    #[error("{0} is missing: build the Worker first (bash scripts/build.sh)")]
    NotBuilt(PathBuf),
    /// `wrangler dev` exited or did not answer `/healthz` in time.
    #[error("wrangler dev did not become healthy: {reason}\n--- last lines of {log} ---\n{tail}")]
    NotHealthy {
        /// Exit status or timeout.
        reason: String,
        /// The log file.
        log: String,
        /// Its last lines.
        tail: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// How to run the Worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// A label for the state directory and log (e.g. the test file's name).
    pub label: String,
    /// The `--persist-to` directory; default a fresh one under
    /// `<repo>/target/e2e/`.
    pub persist_dir: Option<PathBuf>,
    /// `--var` bindings; default `API_TOKEN=test-token`.
    pub vars: BTreeMap<String, String>,
    /// The HTTP port; default a free one.
    pub port: Option<u16>,
    /// How long to wait for `/healthz`.
    pub startup_timeout: Duration,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// `wrangler dev --log-level`; default `info`. At `info` the Worker's
    /// own `console.log` lines (its JSON log) are not printed; `log` shows
    /// them in [`LocalWorker::log_tail`] (e.g. `consumer.poison`).
    pub log_level: String,
    /// Binds the Worker as the consumer of the commit-event queue (see the
    /// module docs); default off, as in production.
    pub consume_events: bool,
    /// How many upload queues the Worker spreads writes over (see the
    /// module docs); default 1, as deployed.
    pub upload_queues: u32,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            label: "worker".into(),
            persist_dir: None,
            vars: BTreeMap::from([("API_TOKEN".to_owned(), DEFAULT_TOKEN.to_owned())]),
            port: None,
            startup_timeout: Duration::from_secs(90),
            stop_grace: Duration::from_secs(5),
            log_level: "info".into(),
            consume_events: false,
            upload_queues: 1,
        }
    }
}

impl WorkerOptions {
    /// Default options with a label.
    #[must_use]
    pub fn new(label: &str) -> Self {
        Self {
            label: label.into(),
            ..Self::default()
        }
    }

    /// Sets (or overrides) a variable; an empty value is passed as empty.
    #[must_use]
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Leaves a variable out entirely (e.g. `API_TOKEN`).
    #[must_use]
    pub fn without_var(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    /// Uses this persist directory.
    #[must_use]
    pub fn persist_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.persist_dir = Some(dir.into());
        self
    }

    /// Uses this port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Sets `wrangler dev --log-level` (`log` prints the Worker's own lines).
    #[must_use]
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// Binds the Worker as the consumer of the commit-event queue
    /// (`r2-pipeline-events`), which production leaves to downstream
    /// Workers; a `test-routes` build then serves the consumed events at
    /// `GET /_test/events?id=<upload id>`.
    #[must_use]
    pub fn consume_events(mut self, on: bool) -> Self {
        self.consume_events = on;
        self
    }

    /// Spreads uploads over `n` queues: binds `UPLOADS_1` … `UPLOADS_{n-1}`
    /// with a consumer each (in a generated config) and sets
    /// `UPLOAD_QUEUES` to `n`. 1 (or 0) is the deployed single queue.
    #[must_use]
    pub fn upload_queues(mut self, n: u32) -> Self {
        self.upload_queues = n.max(1);
        if self.upload_queues > 1 {
            self.vars
                .insert("UPLOAD_QUEUES".into(), self.upload_queues.to_string());
        } else {
            self.vars.remove("UPLOAD_QUEUES");
        }
        self
    }

    /// Whether the run needs a generated copy of `wrangler.toml`.
    fn generates_config(&self) -> bool {
        self.consume_events || self.upload_queues > 1
    }
}

/// The commit-event queue's name in `wrangler.toml`.
pub const EVENTS_QUEUE: &str = "r2-pipeline-events";

/// `wrangler.toml` plus a consumer for the commit-event queue. TOML lets
/// an array of tables gain elements after other tables, so the section is
/// appended as is.
#[must_use]
pub fn config_consuming_events(wrangler_toml: &str) -> String {
    let mut text = wrangler_toml.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    // The deployed configuration leaves commit events off: bind the
    // producer too when it is not bound.
    let bound = text
        .lines()
        .any(|l| l.trim_start().starts_with("binding") && l.contains("\"EVENTS\""));
    if !bound {
        text.push_str(&format!(
            "\n# Added by the e2e harness (consume_events): commit events on.\n\
             [[queues.producers]]\n\
             binding = \"EVENTS\"\n\
             queue = \"{EVENTS_QUEUE}\"\n"
        ));
    }
    text.push_str(&format!(
        "\n# Added by the e2e harness (consume_events): records commit events\n\
         # for GET /_test/events. Never in the deployed configuration.\n\
         [[queues.consumers]]\n\
         queue = \"{EVENTS_QUEUE}\"\n\
         max_batch_size = 100\n\
         max_batch_timeout = 1\n\
         max_retries = 3\n"
    ));
    text
}

/// The first upload queue's name in `wrangler.toml`; shard n > 0 is
/// `<this>-<n>`.
pub const UPLOAD_QUEUE: &str = "r2-pipeline-uploads";

/// `wrangler.toml` plus upload queues 1 … `queues - 1`: for each, a
/// producer binding `UPLOADS_<n>` on queue `r2-pipeline-uploads-<n>` and a
/// consumer with the deployed upload consumer's settings and its (shared)
/// dead letter queue. `UPLOAD_QUEUES` itself is passed as a `--var`.
#[must_use]
pub fn config_with_upload_queues(wrangler_toml: &str, queues: u32) -> String {
    let mut text = wrangler_toml.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for n in 1..queues {
        text.push_str(&format!(
            "\n# Added by the e2e harness (upload_queues): upload queue {n}.\n\
             [[queues.producers]]\n\
             binding = \"UPLOADS_{n}\"\n\
             queue = \"{UPLOAD_QUEUE}-{n}\"\n\
             \n\
             [[queues.consumers]]\n\
             queue = \"{UPLOAD_QUEUE}-{n}\"\n\
             max_batch_size = 100\n\
             max_batch_timeout = 1\n\
             max_retries = 16\n\
             dead_letter_queue = \"{UPLOAD_QUEUE}-dlq\"\n"
        ));
    }
    text
}

/// The repository root: `$PIPELINE_REPO_ROOT`, else two levels above this
/// crate's manifest directory.
#[must_use]
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("PIPELINE_REPO_ROOT") {
        return PathBuf::from(root);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// A free TCP port on 127.0.0.1 (bound, then released).
///
/// # Errors
///
/// When no port can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Process groups started by this process and not yet stopped, with the
/// pids file each is recorded in.
static LIVE_GROUPS: Mutex<Vec<(i32, PathBuf)>> = Mutex::new(Vec::new());
/// Serialises edits of the pids file within this process.
static PIDS_FILE_LOCK: Mutex<()> = Mutex::new(());
static ATEXIT: Once = Once::new();
/// Generated configs (`consume_events`, `upload_queues`) of runs not yet stopped: removed
/// at exit too, for workers held in statics.
static LIVE_CONFIGS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn kill_live_groups() {
    // Runs at process exit (workers held in statics are never dropped):
    // never block, never panic.
    let Ok(mut groups) = LIVE_GROUPS.try_lock() else {
        return;
    };
    for (pgid, pids_file) in groups.drain(..) {
        signal_group(pgid, libc::SIGKILL);
        forget_in_pids_file(pgid, &pids_file, false);
    }
    if let Ok(mut configs) = LIVE_CONFIGS.try_lock() {
        for config in configs.drain(..) {
            let _ = fs::remove_file(config);
        }
    }
}

fn register_group(pgid: i32, pids_file: &Path) {
    ATEXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(kill_live_groups);
        }
    });
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.push((pgid, pids_file.to_path_buf()));
    }
    let _guard = PIDS_FILE_LOCK.lock();
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(pids_file) {
        let _ = writeln!(f, "{pgid}");
    }
}

/// Removes `pgid` from the pids file. At exit (`blocking` false) it is
/// skipped if another thread holds the file.
fn forget_in_pids_file(pgid: i32, pids_file: &Path, blocking: bool) {
    let _guard = if blocking {
        PIDS_FILE_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    } else {
        match PIDS_FILE_LOCK.try_lock() {
            Ok(guard) => guard,
            Err(_) => return,
        }
    };
    if let Ok(text) = fs::read_to_string(pids_file) {
        let kept: String = text
            .lines()
            .filter(|l| l.trim() != pgid.to_string())
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = fs::write(pids_file, kept);
    }
}

fn unregister_group(pgid: i32, pids_file: &Path) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.retain(|(g, _)| *g != pgid);
    }
    forget_in_pids_file(pgid, pids_file, true);
}

/// Whether any process of group `pgid` still exists (zombies included).
fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: sends a signal to a process group this harness created.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// The last `max_lines` lines of a file (at most its last 16 KiB).
fn tail(path: &Path, max_lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

fn unique_name(label: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{label}-{ms}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `wrangler dev` serving the Worker.
#[derive(Debug)]
pub struct LocalWorker {
    opts: WorkerOptions,
    repo: PathBuf,
    persist_dir: PathBuf,
    log_path: PathBuf,
    env_file: PathBuf,
    pids_file: PathBuf,
    /// The generated config of the current run (`consume_events`,
    /// `upload_queues`), removed
    /// when the run stops.
    config_file: Option<PathBuf>,
    /// Whether the harness made the persist directory (and so removes it).
    owns_persist_dir: bool,
    port: u16,
    /// The devtools inspector port of the current run (0 before the first).
    inspector_port: u16,
    child: Option<Child>,
    pgid: Option<i32>,
}

impl LocalWorker {
    /// Starts the Worker and waits until `GET /healthz` answers `200`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotBuilt`] when `build/worker/shim.mjs` is missing,
    /// [`HarnessError::Io`] when directories or the process cannot be made,
    /// [`HarnessError::NotHealthy`] (with the log's tail) when wrangler exits
    /// or `/healthz` does not answer within `startup_timeout`.
    pub fn start(opts: WorkerOptions) -> Result<Self, HarnessError> {
        let repo = repo_root();
        let shim = repo.join("build/worker/shim.mjs");
        if !shim.exists() {
            return Err(HarnessError::NotBuilt(shim));
        }
        let e2e_dir = repo.join("target/e2e");
        let worker_opts_owns = opts.persist_dir.is_none();
        let persist_dir = match &opts.persist_dir {
            Some(dir) => dir.clone(),
            None => e2e_dir.join(unique_name(&opts.label)),
        };
        fs::create_dir_all(&persist_dir)
            .map_err(io_err(format!("creating {}", persist_dir.display())))?;
        fs::create_dir_all(&e2e_dir).map_err(io_err(format!("creating {}", e2e_dir.display())))?;
        let log_path = persist_dir.with_extension("log");
        let env_file = persist_dir.with_extension("env");
        fs::write(&env_file, b"").map_err(io_err(format!("writing {}", env_file.display())))?;
        let port = match opts.port {
            Some(p) => p,
            None => free_port().map_err(io_err("finding a free port"))?,
        };
        let mut worker = Self {
            opts,
            repo,
            persist_dir,
            log_path,
            env_file,
            pids_file: e2e_dir.join("pids"),
            config_file: None,
            owns_persist_dir: worker_opts_owns,
            port,
            inspector_port: 0,
            child: None,
            pgid: None,
        };
        worker.spawn()?;
        Ok(worker)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let inspector = free_port().map_err(io_err("finding a free inspector port"))?;
        self.inspector_port = inspector;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_err(format!("opening {}", self.log_path.display())))?;
        let _ = writeln!(
            log,
            "=== harness: starting wrangler dev on port {} (persist {}) ===",
            self.port,
            self.persist_dir.display()
        );
        let log_err = log
            .try_clone()
            .map_err(io_err("duplicating the log handle"))?;
        let mut cmd = Command::new(self.repo.join("node_modules/.bin/wrangler"));
        cmd.current_dir(&self.repo).arg("dev");
        if self.opts.generates_config() {
            let base = self.repo.join("wrangler.toml");
            let mut text =
                fs::read_to_string(&base).map_err(io_err(format!("reading {}", base.display())))?;
            if self.opts.consume_events {
                text = config_consuming_events(&text);
            }
            text = config_with_upload_queues(&text, self.opts.upload_queues);
            let config = self.repo.join(format!(
                ".wrangler-e2e-{}.toml",
                unique_name(&self.opts.label)
            ));
            fs::write(&config, text).map_err(io_err(format!("writing {}", config.display())))?;
            if let Ok(mut configs) = LIVE_CONFIGS.lock() {
                configs.push(config.clone());
            }
            cmd.arg("--config").arg(&config);
            self.config_file = Some(config);
        }
        cmd.args(["--ip", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .args(["--inspector-port", &inspector.to_string()])
            .arg("--persist-to")
            .arg(&self.persist_dir)
            .arg("--env-file")
            .arg(&self.env_file)
            .args(["--log-level", &self.opts.log_level]);
        for (name, value) in &self.opts.vars {
            cmd.arg("--var").arg(format!("{name}:{value}"));
        }
        cmd.env("PIPELINE_SKIP_BUILD", "1")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false")
            .env("WRANGLER_HIDE_BANNER", "true")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("XDG_CONFIG_HOME", self.repo.join(".config"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: setsid is async-signal-safe and touches no Rust state.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.remove_config_file();
                return Err(io_err("spawning wrangler dev")(e));
            }
        };
        let pgid = i32::try_from(child.id()).map_err(|_| HarnessError::Io {
            what: "process id out of range".into(),
            source: io::Error::from(io::ErrorKind::InvalidData),
        })?;
        register_group(pgid, &self.pids_file);
        self.child = Some(child);
        self.pgid = Some(pgid);
        if let Err(e) = self.wait_healthy() {
            self.shutdown(false);
            return Err(e);
        }
        Ok(())
    }

    fn wait_healthy(&mut self) -> Result<(), HarnessError> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .redirects(0)
            .build();
        let url = format!("{}/healthz", self.base_url());
        let deadline = Instant::now() + self.opts.startup_timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(self.not_healthy(format!("wrangler exited with {status}")));
                }
            }
            if let Ok(resp) = agent.get(&url).call() {
                if resp.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(self.not_healthy(format!(
                    "no 200 from {url} within {:?}",
                    self.opts.startup_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn not_healthy(&self, reason: String) -> HarnessError {
        HarnessError::NotHealthy {
            reason,
            log: self.log_path.display().to_string(),
            tail: tail(&self.log_path, 60),
        }
    }

    /// Ends the process group: SIGTERM then, after the grace period, SIGKILL
    /// (`graceful`), or SIGKILL at once. Waits for the leader and, up to 10 s,
    /// for the whole group and the port.
    fn shutdown(&mut self, graceful: bool) {
        let Some(pgid) = self.pgid.take() else {
            self.remove_config_file();
            return;
        };
        let mut child = self.child.take();
        if graceful {
            signal_group(pgid, libc::SIGTERM);
            let deadline = Instant::now() + self.opts.stop_grace;
            while Instant::now() < deadline {
                match child.as_mut().map(Child::try_wait) {
                    Some(Ok(None)) => std::thread::sleep(Duration::from_millis(50)),
                    _ => break,
                }
            }
        }
        // Always: the leader may be gone while workerd lives on in the group.
        signal_group(pgid, libc::SIGKILL);
        if let Some(c) = child.as_mut() {
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Zombies re-parented to an init that does not reap keep the group
            // "alive": the port being free is what matters for a restart.
            let port_free = TcpListener::bind(("127.0.0.1", self.port)).is_ok();
            if !group_alive(pgid) || port_free {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unregister_group(pgid, &self.pids_file);
        self.remove_config_file();
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log_path) {
            let how = if graceful { "stopped" } else { "killed" };
            let _ = writeln!(log, "=== harness: {how} process group {pgid} ===");
        }
    }

    fn remove_config_file(&mut self) {
        if let Some(config) = self.config_file.take() {
            let _ = fs::remove_file(&config);
            if let Ok(mut configs) = LIVE_CONFIGS.lock() {
                configs.retain(|c| *c != config);
            }
        }
    }

    /// Stops the runtime: SIGTERM to its process group, SIGKILL after the
    /// grace period; returns when it is gone. Idempotent.
    pub fn stop(&mut self) {
        self.shutdown(true);
    }

    /// Kills the runtime at once (SIGKILL to the whole group): a crash.
    pub fn kill(&mut self) {
        self.shutdown(false);
    }

    /// Starts the runtime again on the same persisted state and port (stops
    /// it first if it runs).
    ///
    /// # Errors
    ///
    /// As [`LocalWorker::start`].
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.spawn()
    }

    /// Whether the runtime's leader process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The devtools inspector port of the running Worker (`--inspector-port`;
    /// a WebSocket at `ws://127.0.0.1:<port>/ws` speaks the Chrome DevTools
    /// protocol to the Worker's isolate, e.g. to read its memory).
    #[must_use]
    pub fn inspector_port(&self) -> u16 {
        self.inspector_port
    }

    /// The configured `API_TOKEN`, when set and not empty.
    #[must_use]
    pub fn token(&self) -> Option<&str> {
        self.opts
            .vars
            .get("API_TOKEN")
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    /// A client that sends the configured token.
    #[must_use]
    pub fn client(&self) -> Client {
        Client::new(&self.base_url(), self.token())
    }

    /// A client that sends no token.
    #[must_use]
    pub fn anon_client(&self) -> Client {
        Client::new(&self.base_url(), None)
    }

    /// The persist directory.
    #[must_use]
    pub fn persist_dir(&self) -> &Path {
        &self.persist_dir
    }

    /// The log file (wrangler's stdout and stderr).
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }

    /// The process-group id while running.
    #[must_use]
    pub fn pgid(&self) -> Option<i32> {
        self.pgid
    }
}

impl Drop for LocalWorker {
    /// Stops the runtime and removes a persist directory the harness made
    /// (the log stays; `PIPELINE_E2E_KEEP_STATE=1` keeps the state too).
    /// Workers held in statics are never dropped: the `atexit` hook kills
    /// them and their state stays under `target/e2e/`.
    fn drop(&mut self) {
        self.stop();
        let keep = std::env::var_os("PIPELINE_E2E_KEEP_STATE").is_some_and(|v| v == "1");
        if self.owns_persist_dir && !keep {
            let _ = fs::remove_dir_all(&self.persist_dir);
            let _ = fs::remove_file(&self.env_file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_set_and_remove_vars() {
        let o = WorkerOptions::new("x")
            .var("PUBLIC_READS", "false")
            .var("API_TOKEN", "")
            .port(1234);
        assert_eq!(o.vars.get("API_TOKEN").map(String::as_str), Some(""));
        assert_eq!(
            o.vars.get("PUBLIC_READS").map(String::as_str),
            Some("false")
        );
        assert_eq!(o.port, Some(1234));
        assert_eq!(o.log_level, "info");
        assert_eq!(o.clone().log_level("log").log_level, "log");
        let o = o.without_var("API_TOKEN");
        assert!(!o.vars.contains_key("API_TOKEN"));
        assert_eq!(
            WorkerOptions::default()
                .vars
                .get("API_TOKEN")
                .map(String::as_str),
            Some(DEFAULT_TOKEN)
        );
    }

    #[test]
    fn the_events_config_adds_one_consumer() {
        let base = "name = \"w\"\n[[queues.consumers]]\nqueue = \"u\"\n[vars]\nA = \"1\"";
        let text = config_consuming_events(base);
        assert!(text.starts_with(base));
        assert_eq!(text.matches("[[queues.consumers]]").count(), 2);
        assert!(text.contains(&format!("queue = \"{EVENTS_QUEUE}\"")));
        assert!(!WorkerOptions::default().consume_events);
        assert!(WorkerOptions::new("x").consume_events(true).consume_events);
    }

    #[test]
    fn the_sharded_config_adds_a_producer_and_consumer_per_extra_queue() {
        let base = "name = \"w\"\n[[queues.consumers]]\nqueue = \"u\"\n[vars]\nA = \"1\"";
        assert_eq!(config_with_upload_queues(base, 1).trim_end(), base);
        let text = config_with_upload_queues(base, 3);
        assert!(text.starts_with(base));
        assert_eq!(text.matches("[[queues.producers]]").count(), 2);
        assert_eq!(text.matches("[[queues.consumers]]").count(), 3);
        for n in [1, 2] {
            assert!(text.contains(&format!("binding = \"UPLOADS_{n}\"")));
            assert_eq!(
                text.matches(&format!("queue = \"{UPLOAD_QUEUE}-{n}\""))
                    .count(),
                2
            );
        }
        assert_eq!(
            text.matches(&format!("dead_letter_queue = \"{UPLOAD_QUEUE}-dlq\""))
                .count(),
            2
        );
        let o = WorkerOptions::new("x").upload_queues(2);
        assert_eq!(o.upload_queues, 2);
        assert_eq!(o.vars.get("UPLOAD_QUEUES").map(String::as_str), Some("2"));
        assert!(o.generates_config());
        let o = o.upload_queues(1);
        assert!(!o.vars.contains_key("UPLOAD_QUEUES") && !o.generates_config());
    }

    #[test]
    fn consuming_events_binds_the_producer_only_when_it_is_not_bound() {
        let off = "name = \"w\"\n# binding = \"EVENTS\"\n";
        let text = config_consuming_events(off);
        assert_eq!(text.matches("binding = \"EVENTS\"").count(), 2);
        assert!(text.contains("\n[[queues.producers]]\nbinding = \"EVENTS\""));
        let on = "[[queues.producers]]\nbinding = \"EVENTS\"\nqueue = \"q\"\n";
        let text = config_consuming_events(on);
        assert_eq!(text.matches("[[queues.producers]]").count(), 1);
        assert_eq!(text.matches("[[queues.consumers]]").count(), 1);
    }

    #[test]
    fn names_are_unique() {
        assert_ne!(unique_name("a"), unique_name("a"));
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let dir = std::env::temp_dir().join(unique_name("tail"));
        fs::write(&dir, "1\n2\n3\n4\n").unwrap();
        assert_eq!(tail(&dir, 2), "3\n4");
        assert_eq!(tail(&dir.with_extension("none"), 2), "(no log)");
        let _ = fs::remove_file(&dir);
    }

    #[test]
    fn pids_file_records_and_forgets_groups() {
        let file = std::env::temp_dir().join(unique_name("pids"));
        // Ids that are certainly not ours to signal are never signalled here:
        // register/unregister only edit the lists.
        register_group(-7, &file);
        register_group(-8, &file);
        assert_eq!(fs::read_to_string(&file).unwrap(), "-7\n-8\n");
        unregister_group(-7, &file);
        assert_eq!(fs::read_to_string(&file).unwrap(), "-8\n");
        unregister_group(-8, &file);
        assert!(LIVE_GROUPS
            .lock()
            .unwrap()
            .iter()
            .all(|(g, _)| *g != -7 && *g != -8));
        let _ = fs::remove_file(&file);
    }
}

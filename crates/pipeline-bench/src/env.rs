//! What the run ran on: the machine, the tool versions and the Worker's
//! settings. Every figure in the JSON comes with these inputs.

use std::path::Path;
use std::process::Command;

use serde::Serialize;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// The CPU's brand string.
    pub cpu_model: Option<String>,
    /// CPUs this process may use.
    pub cores: usize,
    /// Logical CPUs of the machine.
    pub cpuinfo_processors: usize,
    /// Total RAM, bytes.
    pub memory_total_bytes: Option<u64>,
    /// The kernel's release.
    pub kernel: Option<String>,
}

/// Versions of what was measured and what measured it.
#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    /// This tool.
    pub pipeline_bench: String,
    /// `rustc --version`.
    pub rustc: Option<String>,
    /// node_modules/wrangler/package.json.
    pub wrangler: Option<String>,
    /// node_modules/workerd/package.json.
    pub workerd: Option<String>,
    /// The `worker` crate in Cargo.lock.
    pub worker_crate: Option<String>,
    /// `git rev-parse HEAD` of the repository the Worker was run from (the
    /// work tree may differ; `None` for a copy without `.git`).
    pub git_commit: Option<String>,
    /// `git rev-parse HEAD` of the workspace this tool was built from.
    pub bench_source_git_commit: Option<String>,
}

/// The Worker's settings that shape the numbers, from wrangler.toml.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    /// The upload queue's consumer `max_batch_size`.
    pub max_batch_size: Option<i64>,
    /// The upload queue's consumer `max_batch_timeout` (seconds).
    pub max_batch_timeout_s: Option<f64>,
    /// The upload queue's consumer `max_retries`.
    pub max_retries: Option<i64>,
    /// The upload queue's name.
    pub upload_queue: Option<String>,
    /// `[vars] MAX_UPLOAD_BYTES`.
    pub max_upload_bytes: Option<String>,
    /// `compatibility_date`.
    pub compatibility_date: Option<String>,
}

/// The machine this process runs on.
#[must_use]
pub fn machine() -> Machine {
    let mut sys = System::new();
    sys.refresh_cpu_list(CpuRefreshKind::nothing());
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    let cpu_model = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_owned())
        .filter(|b| !b.is_empty());
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpuinfo_processors: sys.cpus().len(),
        memory_total_bytes: Some(sys.total_memory()).filter(|b| *b > 0),
        kernel: System::kernel_version(),
    }
}

fn command_line(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn package_version(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("version")?.as_str().map(str::to_owned)
}

/// The version of package `name` in a Cargo.lock text.
#[must_use]
pub fn lock_version(lock: &str, name: &str) -> Option<String> {
    let v: toml::Table = lock.parse().ok()?;
    v.get("package")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(toml::Value::as_str) == Some(name))?
        .get("version")?
        .as_str()
        .map(str::to_owned)
}

/// Versions, looked up under the repository root `repo`.
#[must_use]
pub fn versions(repo: &Path) -> Versions {
    Versions {
        pipeline_bench: env!("CARGO_PKG_VERSION").to_owned(),
        rustc: command_line("rustc", &["--version"], repo),
        wrangler: package_version(&repo.join("node_modules/wrangler/package.json")),
        workerd: package_version(&repo.join("node_modules/workerd/package.json")),
        worker_crate: std::fs::read_to_string(repo.join("Cargo.lock"))
            .ok()
            .and_then(|t| lock_version(&t, "worker")),
        git_commit: command_line("git", &["rev-parse", "HEAD"], repo),
        bench_source_git_commit: command_line(
            "git",
            &["rev-parse", "HEAD"],
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        ),
    }
}

/// The settings of a wrangler.toml text: the consumer of the queue that the
/// `UPLOADS` producer binding sends to (else the first consumer).
#[must_use]
pub fn parse_settings(text: &str) -> Settings {
    let Ok(cfg) = text.parse::<toml::Table>() else {
        return Settings::default();
    };
    let queues = cfg.get("queues");
    let upload_queue = queues
        .and_then(|q| q.get("producers"))
        .and_then(toml::Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("binding").and_then(toml::Value::as_str) == Some("UPLOADS"))
        })
        .and_then(|p| p.get("queue"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned);
    let consumers = queues
        .and_then(|q| q.get("consumers"))
        .and_then(toml::Value::as_array);
    let consumer = consumers.and_then(|cs| {
        cs.iter()
            .find(|c| {
                upload_queue.is_some()
                    && c.get("queue").and_then(toml::Value::as_str) == upload_queue.as_deref()
            })
            .or_else(|| cs.first())
    });
    let int = |name: &str| {
        consumer
            .and_then(|c| c.get(name))
            .and_then(toml::Value::as_integer)
    };
    #[allow(clippy::cast_precision_loss)]
    let max_batch_timeout_s = consumer
        .and_then(|c| c.get("max_batch_timeout"))
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
    Settings {
        max_batch_size: int("max_batch_size"),
        max_batch_timeout_s,
        max_retries: int("max_retries"),
        upload_queue,
        max_upload_bytes: cfg
            .get("vars")
            .and_then(|v| v.get("MAX_UPLOAD_BYTES"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned),
        compatibility_date: cfg
            .get("compatibility_date")
            .and_then(toml::Value::as_str)
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_described() {
        let m = machine();
        assert!(m.cores > 0 && m.cpuinfo_processors >= m.cores);
        assert!(m.memory_total_bytes.is_some_and(|b| b > 0));
    }

    #[test]
    fn settings_come_from_the_upload_consumer() {
        let s = parse_settings(
            r#"
compatibility_date = "2026-04-01"
[[queues.producers]]
binding = "UPLOADS"
queue = "up"
[[queues.consumers]]
queue = "dlq"
max_batch_size = 7
[[queues.consumers]]
queue = "up"
max_batch_size = 100
max_batch_timeout = 1
max_retries = 10
[vars]
MAX_UPLOAD_BYTES = "104857600"
"#,
        );
        assert_eq!(s.max_batch_size, Some(100));
        assert_eq!(s.max_batch_timeout_s, Some(1.0));
        assert_eq!(s.max_retries, Some(10));
        assert_eq!(s.upload_queue.as_deref(), Some("up"));
        assert_eq!(s.max_upload_bytes.as_deref(), Some("104857600"));
        assert_eq!(s.compatibility_date.as_deref(), Some("2026-04-01"));
        assert_eq!(parse_settings("not toml [").max_batch_size, None);
    }

    #[test]
    fn lock_versions() {
        let lock = "version = 4\n[[package]]\nname = \"worker\"\nversion = \"0.8.7\"\n[[package]]\nname = \"x\"\nversion = \"1.0.0\"\n";
        assert_eq!(lock_version(lock, "worker").as_deref(), Some("0.8.7"));
        assert_eq!(lock_version(lock, "nope"), None);
    }
}

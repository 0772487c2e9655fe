//! The `r2p` command-line tool (`crates/r2p`), run as a real process
//! against the real Worker on `wrangler dev`: uploads with `--wait`, watch,
//! reads (whole, ranges, to a file), listings, status, deletes, counters,
//! stats, and the documented exit codes and error lines.
//!
//! The binary is built once per run with `cargo build -p r2p` into the same
//! target directory and profile as this test (or taken from `R2P_BIN`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use e2e::{pseudo_random_bytes, shared, unique_key};
use predicates::prelude::*;
use serde_json::Value;

/// The `r2p` binary: `$R2P_BIN`, else built next to this test binary.
fn r2p_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("R2P_BIN") {
            return PathBuf::from(bin);
        }
        // <target>/<profile>/deps/cli-<hash>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("profile dir has a parent");
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "-p", "r2p", "--bin", "r2p"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build -p r2p");
        assert!(status.success(), "cargo build -p r2p failed: {status}");
        profile_dir.join(format!("r2p{}", std::env::consts::EXE_SUFFIX))
    })
}

/// `r2p` aimed at the shared worker with its token, nothing else inherited
/// that could change its behaviour.
fn r2p() -> Command {
    let w = shared();
    let mut cmd = Command::new(r2p_bin());
    cmd.env_remove("R2P_URL")
        .env_remove("R2P_TOKEN")
        .env("R2P_URL", w.base_url())
        .env(
            "R2P_TOKEN",
            w.token().expect("the shared worker has a token"),
        )
        .timeout(Duration::from_secs(120));
    cmd
}

/// A scratch directory for this test binary's files.
fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

/// Writes `bytes` to a fresh file in the scratch directory.
fn file_with(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().path().join(name);
    std::fs::write(&path, bytes).expect("writing a test file");
    path
}

fn json(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// `r2p put FILE KEY --wait --json` → the final status.
fn put_wait(path: &Path, key: &str) -> Value {
    let out = r2p()
        .args(["put", "--wait=60", "--json"])
        .arg(path)
        .arg(key)
        .output()
        .expect("running r2p");
    assert!(
        out.status.success(),
        "put --wait failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out.stdout)
}

/// `r2p get KEY` to stdout.
fn get_bytes(key: &str) -> Vec<u8> {
    let out = r2p().args(["get", key]).output().expect("running r2p");
    assert!(
        out.status.success(),
        "get failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn put_wait_commits_a_small_file_and_get_returns_the_same_bytes() {
    let key = unique_key("cli-small");
    let body = b"hello from r2p\n".repeat(300);
    let path = file_with("small.txt", &body);
    let s = put_wait(&path, &key);
    assert_eq!(s["state"], "committed", "{s}");
    assert_eq!(s["key"], key.as_str());
    assert_eq!(s["size"], body.len());
    assert!(s["etag"].is_string(), "{s}");
    assert_eq!(get_bytes(&key), body);
}

#[test]
fn put_wait_streams_a_file_over_the_progress_threshold_and_get_o_writes_it_back() {
    let key = unique_key("cli-large");
    // 3 MiB: over the 1 MiB progress threshold and the inline limit
    // (the Worker stages it in R2).
    let body = pseudo_random_bytes(3 * 1024 * 1024 + 17, 7);
    let path = file_with("large.bin", &body);
    let out = r2p()
        .args(["put", "--wait=60"])
        .arg(&path)
        .arg(&key)
        .output()
        .expect("running r2p");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with(&format!("committed {key} ")), "{line}");
    // Not a terminal: no progress bar (nor anything else) on stderr.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dest = scratch().path().join("large.out");
    let out = r2p()
        .args(["get", "--json", "-o"])
        .arg(&dest)
        .arg(&key)
        .output()
        .expect("running r2p");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = json(&out.stdout);
    assert_eq!(summary["size"], body.len(), "{summary}");
    assert_eq!(summary["status"], 200);
    let got = std::fs::read(&dest).expect("reading the downloaded file");
    assert!(
        got == body,
        "downloaded bytes differ from the uploaded file"
    );
}

#[test]
fn put_from_stdin_round_trips() {
    let key = unique_key("cli-stdin");
    // Over 64 KiB: the Worker needs a Content-Length, which r2p learns by
    // spooling stdin.
    let body = pseudo_random_bytes(100 * 1024, 11);
    let out = r2p()
        .args(["put", "-", &key, "--wait", "--json"])
        .write_stdin(body.clone())
        .output()
        .expect("running r2p");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out.stdout)["state"], "committed");
    assert!(get_bytes(&key) == body, "stdin upload differs");
}

#[test]
fn put_sends_content_type_and_metadata() {
    let key = unique_key("cli-meta");
    let path = file_with("meta.txt", b"{}");
    r2p()
        .args([
            "put",
            "--wait",
            "--content-type",
            "application/json",
            "--meta",
            "owner=alice",
            "--meta",
            "team=blue",
        ])
        .arg(&path)
        .arg(&key)
        .assert()
        .success();
    let o = shared()
        .client()
        .get_object(&key, &Default::default())
        .expect("reading back");
    assert_eq!(o.content_type(), Some("application/json"));
    assert_eq!(o.meta("owner"), Some("alice"));
    assert_eq!(o.meta("team"), Some("blue"));
}

#[test]
fn watch_prints_each_state_change_until_every_id_is_committed() {
    let keys = [unique_key("cli-watch"), unique_key("cli-watch")];
    let mut ids = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let path = file_with(&format!("watch{i}.txt"), format!("body {i}").as_bytes());
        let out = r2p()
            .args(["put", "--json"])
            .arg(&path)
            .arg(key)
            .output()
            .expect("running r2p");
        assert!(out.status.success());
        let accepted = json(&out.stdout);
        assert_eq!(accepted["state"], "queued");
        ids.push(accepted["id"].as_str().expect("an id").to_owned());
    }
    let out = r2p()
        .args(["watch", "--json", "--timeout", "60", &ids[0], &ids[1]])
        .output()
        .expect("running r2p");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    for id in &ids {
        let states: Vec<&str> = lines
            .iter()
            .filter(|l| l["id"] == id.as_str())
            .map(|l| l["state"].as_str().expect("a state"))
            .collect();
        assert_eq!(states.last(), Some(&"committed"), "{id}: {states:?}");
        // Each line is a change: never the same state twice in a row.
        assert!(states.windows(2).all(|w| w[0] != w[1]), "{states:?}");
    }

    // An id that is not an upload: its own error line, exit 3, while the
    // other id is still followed to its end.
    r2p()
        .args(["watch", &ids[1], "not-an-upload-id"])
        .assert()
        .code(3)
        .stdout(predicate::str::starts_with(format!(
            "committed {}",
            keys[1]
        )))
        .stderr(predicate::str::starts_with("r2p: upload_not_found: "));

    // Human form: one line per id, already terminal.
    r2p()
        .args(["watch", &ids[0]])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(format!(
            "committed {}",
            keys[0]
        )));
}

#[test]
fn get_range_returns_the_requested_bytes_and_416_exits_3() {
    let key = unique_key("cli-range");
    let body = b"0123456789abcdef";
    put_wait(&file_with("range.txt", body), &key);
    r2p()
        .args(["get", &key, "--range", "2-5"])
        .assert()
        .success()
        .stdout(predicate::eq(&b"2345"[..]));
    r2p()
        .args(["get", &key, "--range=-3"])
        .assert()
        .success()
        .stdout(predicate::eq(&b"def"[..]));
    r2p()
        .args(["get", &key, "--range", "100-"])
        .assert()
        .code(3)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with("r2p: range_not_satisfiable: "));
}

#[test]
fn ls_lists_keys_under_a_prefix_and_groups_them_with_a_delimiter() {
    let prefix = format!("{}/", unique_key("cli-ls"));
    let keys = [format!("{prefix}a/1.txt"), format!("{prefix}b.txt")];
    for (i, key) in keys.iter().enumerate() {
        put_wait(&file_with(&format!("ls{i}.txt"), b"x"), key);
    }
    let out = r2p()
        .args(["ls", &prefix, "--json"])
        .output()
        .expect("running r2p");
    assert!(out.status.success());
    let v = json(&out.stdout);
    let listed: Vec<&str> = v["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["key"].as_str().expect("key"))
        .collect();
    assert_eq!(listed, keys.iter().map(String::as_str).collect::<Vec<_>>());

    let out = r2p()
        .args(["ls", &prefix, "--delimiter", "/", "--json"])
        .output()
        .expect("running r2p");
    let v = json(&out.stdout);
    assert_eq!(v["prefixes"], serde_json::json!([format!("{prefix}a/")]));
    assert_eq!(v["objects"].as_array().map(Vec::len), Some(1));

    // Human form: one line per object, the key last.
    let out = r2p().args(["ls", &prefix]).output().expect("running r2p");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| keys.iter().any(|k| l.ends_with(k.as_str()))),
        "{text}"
    );
}

#[test]
fn status_json_reports_the_upload_state_and_key() {
    let key = unique_key("cli-status");
    let out = r2p()
        .args(["put", "--json"])
        .arg(file_with("status.txt", b"status"))
        .arg(&key)
        .output()
        .expect("running r2p");
    let id = json(&out.stdout)["id"].as_str().expect("an id").to_owned();

    let out = r2p()
        .args(["status", &id, "--json"])
        .output()
        .expect("running r2p");
    assert!(out.status.success());
    let s = json(&out.stdout);
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["key"], key.as_str());
    assert!(
        ["queued", "scheduled", "committed"].contains(&s["state"].as_str().unwrap_or("")),
        "{s}"
    );

    let out = r2p()
        .args(["status", &id, "--wait=60", "--json"])
        .output()
        .expect("running r2p");
    assert!(out.status.success());
    let s = json(&out.stdout);
    assert_eq!(s["state"], "committed", "{s}");
    assert_eq!(s["size"], 6);
    assert!(s["committed_at"].is_string(), "{s}");

    r2p()
        .args(["status", "not-an-upload-id"])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with("r2p: upload_not_found: "));
}

#[test]
fn rm_then_get_exits_3_with_object_not_found() {
    let key = unique_key("cli-rm");
    put_wait(&file_with("rm.txt", b"bye"), &key);
    let out = r2p()
        .args(["rm", &key, "--wait", "--json"])
        .output()
        .expect("running r2p");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json(&out.stdout);
    assert_eq!(s["state"], "committed", "{s}");
    assert_eq!(s["size"], 0);

    r2p()
        .args(["get", &key])
        .assert()
        .code(3)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with("r2p: object_not_found: "));
}

#[test]
fn rm_sync_deletes_at_once() {
    let key = unique_key("cli-rm-sync");
    put_wait(&file_with("rmsync.txt", b"x"), &key);
    // The key was written within the last second: the sync delete may be
    // refused with 429 once, which r2p retries after Retry-After.
    r2p()
        .args(["rm", &key, "--sync", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"deleted\":true"));
    r2p().args(["get", &key]).assert().code(3);
}

#[test]
fn counter_inc_dec_reset_and_get_report_the_value() {
    let name = format!("cli-{}", unique_key("c").replace('/', "-"));
    let value = |args: &[&str]| -> i64 {
        let out = r2p()
            .args(["counter", &name])
            .args(args)
            .arg("--json")
            .output()
            .expect("running r2p");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(&out.stdout);
        assert_eq!(v["name"], name.as_str());
        v["value"].as_i64().expect("an integer value")
    };
    assert_eq!(value(&["inc", "--by", "5"]), 5);
    assert_eq!(value(&["inc"]), 6);
    assert_eq!(value(&["dec", "--by", "2"]), 4);
    assert_eq!(value(&["dec"]), 3);
    assert_eq!(value(&["get"]), 3);
    assert_eq!(value(&["reset"]), 0);
    assert_eq!(value(&[]), 0);
    r2p()
        .args(["counter", &name, "inc", "--by", "-2"])
        .assert()
        .success()
        .stdout(format!("{name} -2\n"));
}

#[test]
fn stats_json_has_every_total() {
    let out = r2p()
        .args(["stats", "--json"])
        .output()
        .expect("running r2p");
    assert!(out.status.success());
    let v = json(&out.stdout);
    for field in [
        "accepted",
        "committed",
        "superseded",
        "failed",
        "r2_writes",
        "rate_limited",
        "inflight",
    ] {
        assert!(v[field].is_i64(), "{field} missing or not an integer: {v}");
    }
}

#[test]
fn a_bad_token_exits_3_unauthorized_and_is_never_printed() {
    let secret = "wrong-token-r2p-e2e-5f1c";
    let path = file_with("unauth.txt", b"nope");
    for verbose in [false, true] {
        let mut cmd = r2p();
        cmd.env("R2P_TOKEN", secret).arg("put").arg(&path);
        cmd.arg(unique_key("cli-unauth"));
        if verbose {
            cmd.arg("--verbose");
        }
        let out = cmd.output().expect("running r2p");
        assert_eq!(out.status.code(), Some(3), "verbose={verbose}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("r2p: unauthorized: "), "{stderr}");
        assert!(!stderr.contains(secret), "token in stderr: {stderr}");
        assert!(!stdout.contains(secret), "token in stdout: {stdout}");
        if verbose {
            assert!(
                stderr.contains("-> 401"),
                "verbose shows the request: {stderr}"
            );
        }
    }
    // --token on the command line: the same.
    let out = r2p()
        .args([
            "--token",
            secret,
            "counter",
            "cli-unauth",
            "inc",
            "--verbose",
        ])
        .output()
        .expect("running r2p");
    assert_eq!(out.status.code(), Some(3));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
}

#[test]
fn an_unreachable_url_exits_5_with_a_transport_line() {
    let port = pipeline_client::harness::free_port().expect("a free port");
    r2p()
        .env("R2P_URL", format!("http://127.0.0.1:{port}"))
        .arg("stats")
        .assert()
        .code(5)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with("r2p: transport: "));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["put"][..],
        &["get", "k", "--range", "x"],
        &["put", "f", "k", "--wait", "--sync"],
        &["counter", "c", "get", "--by", "3"],
        &["get", "k", "--json"],
        &["frobnicate"],
    ] {
        r2p()
            .args(args)
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::starts_with("r2p: usage: "));
    }
    r2p()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes:"));
}

#[test]
fn put_of_a_missing_file_exits_1() {
    r2p()
        .args([
            "put",
            "/nonexistent/r2p-e2e-file",
            &unique_key("cli-nofile"),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("r2p: io: "));
}

#[test]
fn put_wait_exits_6_when_a_newer_write_supersedes_it() {
    // Two writes to one key in the same queue batch: the older ends
    // superseded. The batch may split them (then both commit), so try a
    // few times; each try checks that exit code and state agree.
    let older = file_with("older.txt", b"older");
    let newer = file_with("newer.txt", b"newer");
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let key = unique_key("cli-superseded");
        let mut waiting = std::process::Command::new(r2p_bin())
            .env("R2P_URL", shared().base_url())
            .env("R2P_TOKEN", shared().token().expect("token"))
            .args(["put", "--wait=60", "--json", "--verbose"])
            .arg(&older)
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning r2p");
        // The verbose line of the 202 says the older write was accepted.
        let mut stderr = waiting.stderr.take().expect("stderr");
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("-> 202") {
            use std::io::Read as _;
            let n = stderr.read(&mut buf).expect("reading r2p's stderr");
            assert!(
                n > 0,
                "r2p ended before its 202: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        r2p().arg("put").arg(&newer).arg(&key).assert().success();
        let out = waiting.wait_with_output().expect("waiting for r2p");
        let s = json(&out.stdout);
        match s["state"].as_str() {
            Some("superseded") => {
                assert_eq!(out.status.code(), Some(6), "{s}");
                assert!(s["superseded_by"].is_string(), "{s}");
                return;
            }
            Some("committed") => assert_eq!(out.status.code(), Some(0), "{s}"),
            other => panic!("unexpected final state {other:?}: {s}"),
        }
    }
    panic!("no try ended superseded within 90 s");
}

//! The operations page, `GET /ops`, in a real browser: headless Chromium
//! (Debian's `chromium` and `chromium-driver`, installed by
//! scripts/setup.sh) driven through WebDriver while a storm of writes to a
//! few hot keys runs.
//!
//! Shows: the page's files are served by the Worker with the headers of
//! every answer (X-Request-Id, CORS) and a content security policy, other
//! paths under `/ops` are the API's `404`; the page fetches nothing before
//! it has a token; a wrong token is refused and asked for again; with the
//! right one every chart keeps receiving points, the hot-key table lists
//! the storm's keys, and the key inspector shows a hot key's commits at
//! least 1000 ms apart; at phone width (390 × 844) nothing overflows the
//! screen; no error reaches the page's console or the browser log.
//! Screenshots (desktop, phone) are saved under `target/ops-screenshots/`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e::{shared, unique_key, LocalWorker};
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use pipeline_client::harness::{free_port, repo_root};
use pipeline_client::PutOptions;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Hot keys of the storm and the threads writing them.
const HOT_KEYS: usize = 3;
const WRITERS: usize = 4;
/// Pause between two writes of one writer thread.
const WRITE_EVERY: Duration = Duration::from_millis(60);
/// Longest wait for one thing the page should show.
const WAIT: Duration = Duration::from_secs(20);
const CHARTS: [&str; 5] = ["throughput", "coalescing", "lag", "inflight", "failures"];

#[test]
fn ops_files_are_served_by_the_worker_with_its_headers() {
    let w = shared();
    let c = w.anon_client();
    for (path, content_type) in [
        ("/ops", "text/html"),
        ("/ops/", "text/html"),
        ("/ops/app.js", "javascript"),
        ("/ops/style.css", "text/css"),
    ] {
        let r = c
            .raw("GET", path, &[("Origin", "https://dash.example")], None)
            .expect(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        let header = |name: &str| r.headers.get(name).unwrap_or_default().to_string();
        assert!(
            header("Content-Type").contains(content_type),
            "GET {path}: Content-Type {}",
            header("Content-Type")
        );
        assert_eq!(header("X-Request-Id").len(), 16, "GET {path}");
        assert_eq!(header("Access-Control-Allow-Origin"), "*", "GET {path}");
        assert!(
            header("Content-Security-Policy").contains("default-src 'self'"),
            "GET {path}: {}",
            header("Content-Security-Policy")
        );
        assert_eq!(header("X-Content-Type-Options"), "nosniff", "GET {path}");
        assert!(!r.body.is_empty(), "GET {path}: empty body");
    }
    let page = c.raw("GET", "/ops", &[], None).expect("GET /ops").text();
    assert!(page.contains("/ops/app.js"), "{page}");
    // uPlot is bundled into the page's script: no CDN.
    let script = c
        .raw("GET", "/ops/app.js", &[], None)
        .expect("app.js")
        .text();
    assert!(script.contains("uplot"), "app.js does not carry uPlot");
    assert!(
        !script.contains("https://"),
        "app.js loads something remote"
    );

    let head = c.raw("HEAD", "/ops", &[], None).expect("HEAD /ops");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    for path in [
        "/ops/nope.js",
        "/ops/a/b.js",
        "/ops/.hidden",
        "/opsx",
        "/index.html",
        "/app.js",
    ] {
        let r = c.raw("GET", path, &[], None).expect(path);
        assert_eq!(r.status, 404, "GET {path}: {}", r.text());
        let v = r
            .json()
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"));
        assert_eq!(v["error"]["code"], "not_found", "GET {path}");
        assert!(r.headers.get("X-Request-Id").is_some(), "GET {path}");
    }
    let r = c.raw("POST", "/ops", &[], Some(b"x")).expect("POST /ops");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.headers.get("Allow"), Some("GET, HEAD"));
}

/// chromedriver in a process group of its own: dropped, the whole group
/// (chromedriver and the browser it started) is killed.
struct Driver {
    child: Child,
    pgid: i32,
    url: String,
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/setup.sh (installs Debian's chromium and chromium-driver)"
            );
        }
        let port = free_port().expect("free port for chromedriver");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let pgid = i32::try_from(child.id()).expect("pid");
        Self {
            child,
            pgid,
            url: format!("http://127.0.0.1:{port}/"),
            profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    fn capabilities(&self) -> Capabilities {
        let profile = self.profile.path().display();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={profile}"),
                    "--window-size=1280,900",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        match caps {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }

    /// A session; chromedriver may take a moment to listen.
    async fn connect(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(self.capabilities())
                .connect(&self.url)
                .await;
            match attempt {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for chromedriver: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test created.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// chromedriver's browser-log command (`goog:loggingPrefs`): the entries
/// since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Waits until `script` returns true; panics with `what` and the page's
/// state otherwise.
async fn wait_for(c: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if js(c, script).await == Value::Bool(true) {
            return;
        }
        if Instant::now() >= deadline {
            let state = js(
                c,
                "return {ops: window.__ops && {polls: window.__ops.polls, refused: window.__ops.refused, \
                 points: window.__ops.points, key: window.__ops.key}, errors: window.__opsErrors, \
                 status: document.getElementById('status').textContent, \
                 keyMsg: document.getElementById('key-msg').textContent, \
                 hot: document.getElementById('hot-keys').innerText};",
            )
            .await;
            panic!("{what}: not within {WAIT:?}; page: {state}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn points(c: &Client) -> Vec<u64> {
    let v = js(c, "return window.__ops.points;").await;
    CHARTS
        .iter()
        .map(|name| v[*name].as_u64().unwrap_or(0))
        .collect()
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let el = c.find(Locator::Css(css)).await.expect(css);
    el.clear().await.expect("clear");
    el.send_keys(text).await.expect("send_keys");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let dir = repo_root().join("target/ops-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("writing the screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

/// Checks that nothing is wider than the window (no sideways scrolling)
/// and that every chart fits.
async fn fits_the_window(c: &Client, what: &str) {
    let v = js(
        c,
        "const w = window.innerWidth; \
         const charts = [...document.querySelectorAll('.chart canvas')] \
           .map(e => e.getBoundingClientRect().right); \
         return {w, scroll: document.documentElement.scrollWidth, charts};",
    )
    .await;
    let width = v["w"].as_f64().expect("innerWidth");
    let scroll = v["scroll"].as_f64().expect("scrollWidth");
    assert!(
        scroll <= width + 1.0,
        "{what}: page {scroll} px wide in a {width} px window"
    );
    let charts = v["charts"].as_array().expect("charts");
    assert_eq!(charts.len(), CHARTS.len(), "{what}: {v}");
    for right in charts {
        let right = right.as_f64().expect("right");
        assert!(
            right <= width + 1.0,
            "{what}: a chart ends at {right} px of {width}"
        );
    }
}

async fn drive(w: &LocalWorker, keys: &[String]) {
    let driver = Driver::start();
    let c = driver.connect().await;
    let token = w.token().expect("the harness sets a token").to_owned();
    let page = format!("{}/ops", w.base_url());
    c.goto(&page).await.expect("opening /ops");

    // Before a token: the prompt, no dashboard, and no request for data.
    wait_for(&c, "the page's script runs", "return !!window.__ops;").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = js(
        &c,
        "return {login: !document.getElementById('login').hidden, \
         dash: !document.getElementById('dashboard').hidden, polls: window.__ops.polls, \
         fetched: performance.getEntriesByType('resource').map(e => new URL(e.name).pathname) \
           .filter(p => !p.startsWith('/ops'))};",
    )
    .await;
    assert_eq!(before["login"], true, "{before}");
    assert_eq!(before["dash"], false, "{before}");
    assert_eq!(before["polls"], 0, "{before}");
    assert_eq!(
        before["fetched"],
        json!([]),
        "fetched before a token: {before}"
    );

    // A wrong token: refused, asked for again, not kept.
    type_into(&c, "#token", "not-the-token").await;
    click(&c, "#token-form button[type=submit]").await;
    wait_for(
        &c,
        "a wrong token is refused",
        "const m = document.getElementById('token-msg'); \
         return !m.hidden && m.textContent.includes('token refused') \
           && !document.getElementById('login').hidden \
           && document.getElementById('dashboard').hidden;",
    )
    .await;
    let kept = js(&c, "return sessionStorage.length;").await;
    assert_eq!(kept, 0, "a refused token stays in sessionStorage");

    // The right token: data.
    type_into(&c, "#token", &token).await;
    click(&c, "#token-form button[type=submit]").await;
    wait_for(
        &c,
        "the dashboard shows after the right token",
        "return document.getElementById('login').hidden && window.__ops.polls >= 1;",
    )
    .await;
    let stored = js(&c, "return sessionStorage.getItem('pipeline-ops-token');").await;
    assert_eq!(stored, Value::String(token.clone()));

    // Every chart receives points, and keeps receiving them.
    wait_for(
        &c,
        "every chart has 4 points",
        "return Object.values(window.__ops.points).length === 5 \
           && Object.values(window.__ops.points).every(n => n >= 4);",
    )
    .await;
    let first = points(&c).await;
    wait_for(
        &c,
        "every chart receives 2 more points",
        &format!(
            "const p = window.__ops.points; const was = {}; \
             return {:?}.every((n, i) => p[n] >= was[i] + 2);",
            json!(first),
            CHARTS
        ),
    )
    .await;
    // The storm shows: writes accepted and committed per second above 0.
    let seen = js(
        &c,
        "const d = window.__ops.data.throughput; \
         return {accepted: Math.max(...d[1].filter(v => v != null)), \
                 committed: Math.max(...d[2].filter(v => v != null)), \
                 inflight: Math.max(...window.__ops.data.inflight[1])};",
    )
    .await;
    assert!(seen["accepted"].as_f64().unwrap_or(0.0) > 0.0, "{seen}");
    assert!(seen["committed"].as_f64().unwrap_or(0.0) > 0.0, "{seen}");

    // The hot-key table lists the storm's keys.
    wait_for(
        &c,
        "the hot-key table lists the storm's keys",
        &format!(
            "const shown = [...document.querySelectorAll('#hot-keys td.key')].map(e => e.textContent); \
             return {}.every(k => shown.includes(k));",
            json!(keys)
        ),
    )
    .await;

    // The key inspector: a hot key's commits at least 1000 ms apart.
    type_into(&c, "#key", &keys[0]).await;
    click(&c, "#key-form button[type=submit]").await;
    wait_for(
        &c,
        "the inspector shows 3 commits of a hot key",
        &format!(
            "return document.getElementById('kv-key').textContent === {} \
               && document.querySelectorAll('#key-commits tr[data-spacing]').length >= 2;",
            json!(keys[0])
        ),
    )
    .await;
    let spacings = js(
        &c,
        "return [...document.querySelectorAll('#key-commits tr[data-spacing]')] \
           .map(r => Number(r.dataset.spacing));",
    )
    .await;
    let spacings: Vec<f64> = spacings
        .as_array()
        .expect("spacings")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    eprintln!("inspector spacings (ms): {spacings:?}");
    assert!(
        spacings.iter().all(|s| *s >= 1000.0),
        "commits closer than 1000 ms: {spacings:?}"
    );

    fits_the_window(&c, "desktop").await;
    js(&c, "window.scrollTo(0, 0); return true;").await;
    screenshot(&c, "desktop.png").await;
    js(
        &c,
        "document.getElementById('inspector').scrollIntoView(); return true;",
    )
    .await;
    screenshot(&c, "desktop-inspector.png").await;
    // The whole page at desktop width in one picture (the README's).
    let height = js(&c, "return document.documentElement.scrollHeight;").await;
    let height = u32::try_from(height.as_u64().unwrap_or(900)).unwrap_or(900);
    c.set_window_size(1280, height.clamp(900, 4000) + 160)
        .await
        .expect("tall window");
    js(&c, "window.scrollTo(0, 0); return true;").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    screenshot(&c, "desktop-full.png").await;

    // Phone width: still live, nothing wider than the screen.
    c.set_window_size(390, 844).await.expect("phone size");
    js(&c, "window.scrollTo(0, 0); return true;").await;
    let before_phone = points(&c).await;
    wait_for(
        &c,
        "charts keep receiving points at phone width",
        &format!(
            "const p = window.__ops.points; const was = {}; \
             return {:?}.every((n, i) => p[n] > was[i]);",
            json!(before_phone),
            CHARTS
        ),
    )
    .await;
    let width = js(&c, "return window.innerWidth;").await;
    assert!(
        width.as_f64().unwrap_or(0.0) <= 400.0,
        "not phone width: {width}"
    );
    fits_the_window(&c, "phone").await;
    screenshot(&c, "phone.png").await;
    js(
        &c,
        "document.getElementById('inspector').scrollIntoView(); return true;",
    )
    .await;
    screenshot(&c, "phone-inspector.png").await;

    // No errors: none the page recorded, none in the browser log but the
    // wrong token's 401.
    let errors = js(&c, "return window.__opsErrors;").await;
    assert_eq!(errors, json!([]), "errors on the page");
    let log = c.issue_cmd(BrowserLog).await.expect("browser log");
    let severe: Vec<&Value> = log
        .as_array()
        .expect("log entries")
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            !e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("status of 401")
        })
        .collect();
    assert!(severe.is_empty(), "browser log: {severe:?}");
    c.close().await.expect("closing the session");
}

#[test]
fn ops_page_shows_a_live_storm_in_a_browser() {
    let w = shared();
    let keys: Vec<String> = (0..HOT_KEYS).map(|_| unique_key("ops")).collect();
    let stop = AtomicBool::new(false);
    let accepted = AtomicUsize::new(0);
    let refused = std::sync::Mutex::new(Vec::<String>::new());
    // wrangler dev's own proxy answers 503 "Your worker restarted
    // mid-request" (not the Worker's JSON error) when the local runtime
    // stalls for seconds, as it has when chromium and the storm start
    // together on two cores. Such a write is sent again; the Worker's own
    // refusals still fail the test.
    let proxy_503 = AtomicUsize::new(0);
    let started = Instant::now();
    let outcome = std::thread::scope(|s| {
        for t in 0..WRITERS {
            let (keys, stop, accepted, refused, proxy_503) =
                (&keys, &stop, &accepted, &refused, &proxy_503);
            let c = w.client();
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[(t + i) % HOT_KEYS];
                    let body = format!("ops storm writer {t} write {i}");
                    match c.put_object(
                        key,
                        body.as_bytes(),
                        &PutOptions::content_type("text/plain"),
                    ) {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.to_string().contains("restarted mid-request") => {
                            proxy_503.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => refused.lock().expect("lock").push(format!("{key}: {e}")),
                    }
                    i += 1;
                    std::thread::sleep(WRITE_EVERY);
                }
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(drive(w, &keys));
        }));
        stop.store(true, Ordering::Relaxed);
        outcome
    });
    eprintln!(
        "storm: {} writes accepted to {HOT_KEYS} keys in {:?}; {} answered 503 by wrangler dev's proxy and sent again",
        accepted.load(Ordering::Relaxed),
        started.elapsed(),
        proxy_503.load(Ordering::Relaxed)
    );
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let refused = refused.into_inner().expect("lock");
    assert!(refused.is_empty(), "storm writes not accepted: {refused:?}");
    assert!(accepted.load(Ordering::Relaxed) > 0);
    assert!(
        proxy_503.load(Ordering::Relaxed) <= 2 * WRITERS,
        "wrangler dev's proxy refused more than one stall's worth of writes"
    );
}

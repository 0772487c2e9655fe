//! `r2p`: the command-line client of the R2 write pipeline.
//!
//! Every subcommand is one or a few calls of `pipeline_client::Client`;
//! this file turns their results into human lines or `--json`, and their
//! errors into one stderr line and an exit code (see [`cli::EXIT_CODES`]).

mod cli;
mod fail;
mod progress;

use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use pipeline_client::{
    Client, ClientError, GetOptions, ListOptions, PutOptions, RetryPolicy, UploadStatus,
};
use serde::Serialize;

use crate::cli::{Cli, Command, CounterAction};
use crate::fail::{scrub, Failure};
use crate::progress::Progress;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let token = cli.token.clone().filter(|t| !t.is_empty());
    match run(&cli, token.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if let Some(line) = f.line() {
                eprintln!("r2p: {}", scrub(&line, token.as_deref()));
            }
            ExitCode::from(f.exit_code())
        }
    }
}

/// Help and version go out as clap prints them; a usage error becomes
/// one line, `r2p: usage: <what>`, and exit code 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    // The message is the first paragraph (a list of missing arguments
    // continues on indented lines).
    let what: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: "))
        .collect();
    let what = what.join(" ");
    let token = std::env::var("R2P_TOKEN").ok();
    let line = format!("usage: {what} (see r2p --help)");
    eprintln!("r2p: {}", scrub(&line, token.as_deref()));
    ExitCode::from(2)
}

type Outcome = Result<(), Failure>;

/// The client for the global options.
fn client(cli: &Cli, token: Option<&str>) -> Client {
    let mut builder = Client::builder(&cli.url)
        .token(token)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(cli.request_timeout))
        .write_timeout(Duration::from_secs(cli.request_timeout))
        .retry(RetryPolicy::default().max_retries(cli.retries));
    if cli.verbose {
        let secret = token.map(str::to_owned);
        builder = builder.trace(move |line| eprintln!("* {}", scrub(line, secret.as_deref())));
    }
    builder.build()
}

fn run(cli: &Cli, token: Option<&str>) -> Outcome {
    let c = client(cli, token);
    let out = Out { json: cli.json };
    let bars = !cli.no_progress && !cli.json && io::stderr().is_terminal();
    match &cli.command {
        Command::Put {
            file,
            key,
            wait,
            sync,
            content_type,
            meta,
            idempotency_key,
        } => {
            let mut opts = PutOptions {
                content_type: content_type.clone(),
                idempotency_key: idempotency_key.clone(),
                ..PutOptions::default()
            };
            for (name, value) in meta {
                opts.headers.push((format!("X-Meta-{name}"), value.clone()));
            }
            put(&c, out, bars, file, key, &opts, *sync, *wait)
        }
        Command::Get {
            key,
            output,
            range,
            latest,
        } => {
            if cli.json && output.is_none() {
                return Err(Failure::Usage(
                    "get --json needs -o FILE: stdout carries the object's bytes".into(),
                ));
            }
            let opts = GetOptions {
                range: range.as_ref().map(|r| format!("bytes={r}")),
                consistency_latest: *latest,
                ..GetOptions::default()
            };
            get(&c, out, bars, key, output.as_deref(), &opts)
        }
        Command::Rm { key, sync, wait } => rm(&c, out, key, *sync, *wait),
        Command::Ls { prefix, delimiter } => ls(&c, out, prefix.clone(), delimiter.clone()),
        Command::Status { id, wait } => status(&c, out, id, *wait),
        Command::Watch { ids, timeout, poll } => watch(
            &c,
            out,
            ids,
            timeout.map(Duration::from_secs),
            Duration::from_secs(*poll),
            token,
        ),
        Command::Stats => {
            let stats = c.stats()?;
            out.print(&stats, || {
                format!(
                    "accepted     {}\ncommitted    {}\nsuperseded   {}\nfailed       {}\nr2_writes    {}\nrate_limited {}\ninflight     {}",
                    stats.accepted,
                    stats.committed,
                    stats.superseded,
                    stats.failed,
                    stats.r2_writes,
                    stats.rate_limited,
                    stats.inflight
                )
            })
        }
        Command::Counter { name, action, by } => counter(&c, out, name, *action, *by),
    }
}

/// Where results go: JSON or human lines, on stdout.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn print<T: Serialize>(self, value: &T, human: impl FnOnce() -> String) -> Outcome {
        let text = if self.json {
            serde_json::to_string(value).map_err(|e| Failure::Local {
                code: "json",
                message: e.to_string(),
            })?
        } else {
            human()
        };
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .or_else(ignore_broken_pipe)
            .map_err(|e| Failure::io("writing to stdout", &e))
    }
}

/// A reader closed early (`r2p ... | head`) is not an error of ours.
fn ignore_broken_pipe(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

/// The body of a put: a file on disk, or standard input spooled to an
/// anonymous temporary file (so its length is known and a retry can resend
/// it), never held in memory.
fn body_source(file: &Path) -> Result<(File, u64, String), Failure> {
    if file.as_os_str() == "-" {
        let mut spool = tempfile::tempfile()
            .map_err(|e| Failure::io("creating a temporary file for stdin", &e))?;
        let len = io::copy(&mut io::stdin().lock(), &mut spool)
            .map_err(|e| Failure::io("reading stdin", &e))?;
        Ok((spool, len, "stdin".into()))
    } else {
        let f = File::open(file).map_err(|e| Failure::io(file.display(), &e))?;
        let len = f
            .metadata()
            .map_err(|e| Failure::io(file.display(), &e))?
            .len();
        Ok((f, len, file.display().to_string()))
    }
}

#[allow(clippy::too_many_arguments)]
fn put(
    c: &Client,
    out: Out,
    bars: bool,
    file: &Path,
    key: &str,
    opts: &PutOptions,
    sync: bool,
    wait: Option<u64>,
) -> Outcome {
    let (body, len, name) = body_source(file)?;
    let bar = Progress::new(bars, len, &format!("put {name}"));
    // Each attempt reads the body from its first byte (a retry resends it).
    let open = || -> io::Result<_> {
        let mut f = body.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        Ok(bar.reader(f))
    };
    if sync {
        let written = c.put_object_stream_sync(key, len, opts, open);
        bar.finish();
        let written = written?;
        return out.print(&written, || {
            format!(
                "committed {} ({} bytes) etag {} at {}",
                written.key, written.size, written.etag, written.committed_at
            )
        });
    }
    let accepted = c.put_object_stream(key, len, opts, open);
    bar.finish();
    let accepted = accepted?;
    match wait {
        None => out.print(&accepted, || {
            format!(
                "queued {} ({} bytes) id {}",
                accepted.key, accepted.size, accepted.id
            )
        }),
        Some(secs) => wait_committed(c, out, &accepted.id, secs),
    }
}

/// Waits for `committed` with the client's `wait_committed`; prints the
/// final status (also when it ended `superseded` or `failed`: exit 6).
fn wait_committed(c: &Client, out: Out, id: &str, secs: u64) -> Outcome {
    match c.wait_committed(id, Duration::from_secs(secs)) {
        Ok(status) => out.print(&status, || status_line(&status)),
        Err(ClientError::NotCommitted(status)) => {
            out.print(&status, || status_line(&status))?;
            Err(ClientError::NotCommitted(status).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// One line for a status: `<state> <key> … id <id>`.
fn status_line(s: &UploadStatus) -> String {
    let mut line = format!("{} {}", s.state.as_str(), s.key);
    if let Some(etag) = &s.etag {
        line.push_str(&format!(" etag {etag}"));
    }
    if let Some(at) = &s.committed_at {
        line.push_str(&format!(" at {at}"));
    }
    if let Some(nb) = &s.not_before {
        line.push_str(&format!(" not before {nb}"));
    }
    if let Some(by) = &s.superseded_by {
        line.push_str(&format!(" by {by}"));
    }
    if let Some(err) = &s.error {
        line.push_str(&format!(" ({}: {})", err.code, err.message));
    }
    line.push_str(&format!(" id {}", s.id));
    line
}

/// What `get -o FILE --json` prints.
#[derive(Serialize)]
struct Downloaded<'a> {
    key: &'a str,
    file: String,
    status: u16,
    size: u64,
    etag: Option<&'a str>,
    content_type: Option<&'a str>,
    content_range: Option<&'a str>,
}

fn get(
    c: &Client,
    out: Out,
    bars: bool,
    key: &str,
    output: Option<&Path>,
    opts: &GetOptions,
) -> Outcome {
    let mut stream = c.get_object_stream(key, opts)?;
    let expected = stream.content_length();
    let bar = Progress::new(bars, expected.unwrap_or(0), &format!("get {key}"));
    let headers = stream.headers.clone();
    let mut reader = bar.reader(&mut stream);
    let copied = match output {
        None => {
            let mut stdout = io::stdout().lock();
            let r = io::copy(&mut reader, &mut stdout).and_then(|n| stdout.flush().map(|()| n));
            bar.finish();
            match r {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(download_error(&e)),
                Ok(n) => n,
            }
        }
        Some(path) => {
            let copied = copy_to_file(&mut reader, path);
            bar.finish();
            copied?
        }
    };
    if let Some(n) = expected.filter(|n| *n != copied) {
        if let Some(path) = output {
            let _ = std::fs::remove_file(path);
        }
        return Err(Failure::Transport(format!(
            "GET {key}: got {copied} of {n} bytes"
        )));
    }
    let Some(path) = output else {
        return Ok(());
    };
    let summary = Downloaded {
        key,
        file: path.display().to_string(),
        status: stream.status,
        size: copied,
        etag: headers.get("etag"),
        content_type: headers.get("content-type"),
        content_range: headers.get("content-range"),
    };
    out.print(&summary, || {
        format!("{key} -> {} ({copied} bytes)", path.display())
    })
}

/// A read failure is the connection's; a write failure is ours.
fn download_error(e: &io::Error) -> Failure {
    Failure::Transport(format!("reading the object: {e}"))
}

/// Copies into `path` (created or truncated); removes it again on failure.
fn copy_to_file(reader: &mut impl Read, path: &Path) -> Result<u64, Failure> {
    let mut file = File::create(path).map_err(|e| Failure::io(path.display(), &e))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let result = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(download_error(&e)),
        };
        if let Err(e) = file.write_all(&buf[..n]) {
            break Err(Failure::io(path.display(), &e));
        }
        total += n as u64;
    };
    if result.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    result
}

/// What `rm --sync --json` prints.
#[derive(Serialize)]
struct Deleted<'a> {
    key: &'a str,
    deleted: bool,
}

fn rm(c: &Client, out: Out, key: &str, sync: bool, wait: Option<u64>) -> Outcome {
    if sync {
        c.delete_object_sync(key)?;
        return out.print(&Deleted { key, deleted: true }, || format!("deleted {key}"));
    }
    let accepted = c.delete_object(key)?;
    match wait {
        None => out.print(&accepted, || {
            format!("queued delete of {} id {}", accepted.key, accepted.id)
        }),
        Some(secs) => wait_committed(c, out, &accepted.id, secs),
    }
}

/// What `ls --json` prints: every page merged.
#[derive(Serialize)]
struct Listing {
    objects: Vec<pipeline_client::ListedObject>,
    prefixes: Vec<String>,
}

fn ls(c: &Client, out: Out, prefix: Option<String>, delimiter: Option<String>) -> Outcome {
    let pages = c.list_all(&ListOptions {
        prefix,
        delimiter,
        ..ListOptions::default()
    })?;
    let mut listing = Listing {
        objects: Vec::new(),
        prefixes: Vec::new(),
    };
    for page in pages {
        listing.objects.extend(page.objects);
        listing.prefixes.extend(page.prefixes);
    }
    if !out.json && listing.objects.is_empty() && listing.prefixes.is_empty() {
        // Nothing on stdout; say so on stderr for a person at a terminal.
        eprintln!("r2p: no objects");
        return Ok(());
    }
    out.print(&listing, || {
        let mut lines: Vec<String> = listing
            .prefixes
            .iter()
            .map(|p| format!("{:>24} {:>12}  {p}", "", "PRE"))
            .collect();
        lines.extend(
            listing
                .objects
                .iter()
                .map(|o| format!("{:>24} {:>12}  {}", o.uploaded_at, o.size, o.key)),
        );
        lines.join("\n")
    })
}

fn status(c: &Client, out: Out, id: &str, wait: Option<u64>) -> Outcome {
    let Some(secs) = wait else {
        let s = c.upload_status(id, None)?;
        return out.print(&s, || status_line(&s));
    };
    let s = c.wait_terminal(id, Duration::from_secs(secs))?;
    out.print(&s, || status_line(&s))
}

/// What a watching thread reports.
enum Seen {
    /// A state change of an id.
    Change(UploadStatus),
    /// An id's watch ended without a terminal state (its index, why).
    Failed(usize, Failure),
}

/// Follows every id on a thread of its own; prints each state change, and
/// each id's failure, as it comes. Exit: 0 when all ended, else the code of
/// the first id (in argument order) that did not.
fn watch(
    c: &Client,
    out: Out,
    ids: &[String],
    timeout: Option<Duration>,
    poll: Duration,
    token: Option<&str>,
) -> Outcome {
    let (tx, rx) = mpsc::channel::<Seen>();
    let mut failed: Vec<Option<u8>> = vec![None; ids.len()];
    let mut print_error = None;
    std::thread::scope(|scope| {
        for (i, id) in ids.iter().enumerate() {
            let tx = tx.clone();
            scope.spawn(move || {
                let result = c.watch_upload(id, timeout, poll, |s| {
                    let _ = tx.send(Seen::Change(s.clone()));
                });
                if let Err(e) = result {
                    let _ = tx.send(Seen::Failed(i, Failure::from(e)));
                }
            });
        }
        drop(tx);
        // Printed here, on one thread, as the changes arrive.
        for seen in rx {
            match seen {
                Seen::Change(s) => {
                    if let Err(e) = out.print(&s, || status_line(&s)) {
                        print_error.get_or_insert(e);
                    }
                }
                Seen::Failed(i, f) => {
                    let line = format!("{} (id {})", f.line().unwrap_or_default(), ids[i]);
                    eprintln!("r2p: {}", scrub(&line, token));
                    failed[i] = Some(f.exit_code());
                }
            }
        }
    });
    if let Some(code) = failed.into_iter().flatten().next() {
        return Err(Failure::Reported(code));
    }
    print_error.map_or(Ok(()), Err)
}

fn counter(c: &Client, out: Out, name: &str, action: CounterAction, by: Option<i64>) -> Outcome {
    if by.is_some() && matches!(action, CounterAction::Get | CounterAction::Reset) {
        return Err(Failure::Usage("--by goes with inc or dec".into()));
    }
    let counter = match action {
        CounterAction::Get => c.counter(name)?,
        CounterAction::Inc => c.increment(name, by)?,
        CounterAction::Dec => c.decrement(name, by)?,
        CounterAction::Reset => {
            c.reset_counter(name)?;
            pipeline_client::Counter {
                name: name.to_owned(),
                value: 0,
            }
        }
    };
    out.print(&counter, || format!("{} {}", counter.name, counter.value))
}

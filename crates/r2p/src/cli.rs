//! The command line: global options, subcommands and their value parsers.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The exit codes, as `r2p --help` prints them (also in the crate's README).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  local error: a file cannot be read or written, an answer off the contract
  2  usage error (bad arguments)
  3  API error: the API answered with an error (the line names its code,
     e.g. `r2p: object_not_found: ...`)
  4  timeout: a --wait or watch deadline passed before a terminal state
  5  connection or transport error: no answer (refused, reset, timed out)
  6  put/rm --wait: the write ended `superseded` or `failed`, not `committed`

Errors are printed on stderr as one line: `r2p: <code>: <message>`.
`status --wait` and `watch` report whatever terminal state is reached
(exit 0); only put/rm --wait ask for `committed`.

Environment: R2P_URL (default http://127.0.0.1:8787), R2P_TOKEN. The token
is never printed, not in errors and not with --verbose.";

/// `r2p`: put, read, list and follow objects through the R2 write pipeline.
#[derive(Debug, Parser)]
#[command(
    name = "r2p",
    version,
    about = "Command-line client of the R2 write pipeline (queue-buffered writes, one per second per key)",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The Worker's base URL.
    #[arg(
        long,
        env = "R2P_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8787",
        value_parser = parse_url,
        global = true
    )]
    pub url: String,

    /// Bearer token for writes (and for reads when they are private).
    #[arg(long, env = "R2P_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// Print machine-readable JSON on stdout: one object per command (one
    /// line per state change for `watch`).
    #[arg(long, global = true)]
    pub json: bool,

    /// Print each request, its status and timing, and each retry on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Retries of a request refused with 429 or 503, honouring Retry-After
    /// (an async put only with --idempotency-key; an async rm and counter
    /// inc/dec never, as a repeat could take effect twice).
    #[arg(long, value_name = "N", default_value_t = 3, global = true)]
    pub retries: u32,

    /// Time limit for each request without progress (connect: 10 s).
    #[arg(long, value_name = "SECS", default_value_t = 60, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,

    /// Never draw progress bars (they are drawn only on a terminal, for
    /// bodies of 1 MiB or more, and never with --json).
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload FILE (`-` for standard input) to KEY; streamed from disk.
    Put {
        /// The file to upload, or `-` for standard input.
        file: PathBuf,
        /// The object key.
        key: String,
        /// Wait until the write is committed, at most SECS (default 60).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "60", conflicts_with = "sync")]
        wait: Option<u64>,
        /// Write synchronously (`?mode=sync`): committed on return, or 429
        /// when the key was written less than a second ago.
        #[arg(long)]
        sync: bool,
        /// Content-Type of the object.
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        /// Custom metadata NAME=VALUE (repeatable), sent as X-Meta-NAME.
        #[arg(long = "meta", value_name = "NAME=VALUE", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
        /// Idempotency-Key: a repeat within 24 h returns the first write's id;
        /// also makes the async put safe to retry.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Download KEY to stdout or to a file.
    Get {
        /// The object key.
        key: String,
        /// Write the bytes to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only bytes A to B (inclusive): `A-B`, `A-` or `-N` (the last N).
        #[arg(long, value_name = "A-B", value_parser = parse_range)]
        range: Option<String>,
        /// Read the newest accepted write even before it is committed
        /// (`?consistency=latest`).
        #[arg(long)]
        latest: bool,
    },
    /// Delete KEY (queued like a write).
    Rm {
        /// The object key.
        key: String,
        /// Delete synchronously (`?mode=sync`).
        #[arg(long)]
        sync: bool,
        /// Wait until the delete is committed, at most SECS (default 60).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "60", conflicts_with = "sync")]
        wait: Option<u64>,
    },
    /// List objects (every page), optionally under PREFIX.
    Ls {
        /// Only keys starting with PREFIX.
        prefix: Option<String>,
        /// Group keys into common prefixes at this delimiter (e.g. `/`).
        #[arg(long, value_name = "DELIM")]
        delimiter: Option<String>,
    },
    /// Show an upload's status.
    Status {
        /// The upload id (from put).
        id: String,
        /// Wait for a terminal state, at most SECS (default 60).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "60")]
        wait: Option<u64>,
    },
    /// Follow uploads, printing each state change, until all are terminal.
    Watch {
        /// Upload ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Give up after SECS (exit 4); default: no limit.
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Longest single long-poll, 1 to 30 s (a state change between
        /// non-terminal states shows at the next poll).
        #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=30))]
        poll: u64,
    },
    /// Pipeline totals (`GET /stats`).
    Stats,
    /// Read or change a counter.
    Counter {
        /// The counter name.
        name: String,
        /// What to do.
        #[arg(value_enum, default_value_t = CounterAction::Get)]
        action: CounterAction,
        /// Step for inc and dec (default 1).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        by: Option<i64>,
    },
}

/// What `counter` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CounterAction {
    /// Read the value.
    Get,
    /// Add --by (default 1).
    Inc,
    /// Subtract --by (default 1).
    Dec,
    /// Set to 0.
    Reset,
}

/// An `http://` or `https://` URL with a host.
fn parse_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("expected an http:// or https:// URL, got `{s}`"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("the URL `{s}` has no host"));
    }
    Ok(s.to_owned())
}

/// `NAME=VALUE` with a non-empty name.
fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

/// `A-B`, `A-` or `-N` (whole numbers, A ≤ B), returned as given.
fn parse_range(s: &str) -> Result<String, String> {
    let bad = || format!("expected A-B, A- or -N (byte offsets), got `{s}`");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let num = |t: &str| -> Result<Option<u64>, String> {
        if t.is_empty() {
            Ok(None)
        } else if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().map(Some).map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    match (num(a)?, num(b)?) {
        (None, None) => Err(bad()),
        (Some(a), Some(b)) if a > b => Err(format!("range start {a} is after its end {b}")),
        _ => Ok(s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("r2p").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn wait_takes_an_optional_value() {
        let Command::Put { wait, .. } = parse(&["put", "f", "k", "--wait"]).unwrap().command else {
            panic!("not put");
        };
        assert_eq!(wait, Some(60));
        let Command::Put { wait, .. } = parse(&["put", "f", "k", "--wait=5"]).unwrap().command
        else {
            panic!("not put");
        };
        assert_eq!(wait, Some(5));
        let Command::Put { wait, .. } = parse(&["put", "f", "k"]).unwrap().command else {
            panic!("not put");
        };
        assert_eq!(wait, None);
    }

    #[test]
    fn wait_and_sync_conflict() {
        let e = parse(&["put", "f", "k", "--wait", "--sync"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn urls_need_http_or_https_and_a_host() {
        assert!(parse_url("http://127.0.0.1:8787").is_ok());
        assert!(parse_url("https://pipeline.local/").is_ok());
        for bad in ["", "ftp://x", "127.0.0.1:8787", "http://", "https:///a"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&["--url", "ftp://x", "stats"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn meta_needs_a_name_and_an_equals_sign() {
        assert_eq!(parse_meta("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_meta("a="), Ok(("a".into(), String::new())));
        assert!(parse_meta("=b").is_err());
        assert!(parse_meta("ab").is_err());
    }

    #[test]
    fn ranges_follow_the_three_forms() {
        for ok in ["0-9", "5-", "-3", "7-7"] {
            assert_eq!(parse_range(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "-", "a-b", "9-1", "1-2-3", "+1-2", " 1-2"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counter_defaults_to_get_and_takes_negative_steps() {
        let Command::Counter { action, by, .. } = parse(&["counter", "c"]).unwrap().command else {
            panic!("not counter");
        };
        assert_eq!((action, by), (CounterAction::Get, None));
        let Command::Counter { action, by, .. } = parse(&["counter", "c", "inc", "--by", "-4"])
            .unwrap()
            .command
        else {
            panic!("not counter");
        };
        assert_eq!((action, by), (CounterAction::Inc, Some(-4)));
    }

    #[test]
    fn help_documents_the_exit_codes_and_the_environment() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("6  put/rm --wait"), "{help}");
        assert!(help.contains("R2P_TOKEN"), "{help}");
    }
}

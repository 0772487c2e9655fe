//! Scenario 4: the Worker's wasm, raw and gzipped.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct WasmResult {
    /// The file measured.
    pub path: PathBuf,
    /// Its size.
    pub raw_bytes: u64,
    /// Gzipped (default level), as a deploy reports it.
    pub gzip_bytes: u64,
    /// Whether the benchmark/fault routes are compiled in (a string only
    /// they use appears in the data section): a test-routes build.
    pub contains_test_routes: bool,
    /// What the bench knows about the build.
    pub build: String,
}

/// Strings only the test routes (`src/bench.rs`) put in the binary. Short
/// path literals are compiled into integer compares, so they cannot be used.
pub const TEST_ROUTE_MARKERS: [&[u8]; 1] = [b"no such test route"];

/// The gzipped size of `data`.
#[must_use]
pub fn gzip_len(data: &[u8]) -> u64 {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    if enc.write_all(data).is_err() {
        return 0;
    }
    enc.finish().map_or(0, |v| v.len() as u64)
}

/// Whether `needle` occurs in `hay`.
#[must_use]
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Measures `path`.
///
/// # Errors
///
/// When the file cannot be read.
/// `build` describes the build when the caller knows it; otherwise the
/// description says only what the file shows.
pub fn run(path: &Path, build: Option<&str>) -> std::io::Result<WasmResult> {
    let data = std::fs::read(path)?;
    let contains_test_routes = TEST_ROUTE_MARKERS.iter().any(|m| contains(&data, m));
    let build = build.map_or_else(
        || {
            if contains_test_routes {
                "as found: a benchmark build (test routes compiled in), not the production wasm"
                    .to_owned()
            } else {
                "as found: no test routes (production features)".to_owned()
            }
        },
        str::to_owned,
    );
    let r = WasmResult {
        path: path.to_path_buf(),
        raw_bytes: data.len() as u64,
        gzip_bytes: gzip_len(&data),
        contains_test_routes,
        build,
    };
    eprintln!(
        "scenario 4: wasm {}: {} bytes, {} gzipped{}",
        path.display(),
        r.raw_bytes,
        r.gzip_bytes,
        if r.contains_test_routes {
            " (test-routes build)"
        } else {
            ""
        }
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_shrinks_repetitive_data() {
        let data = vec![b'a'; 10_000];
        let n = gzip_len(&data);
        assert!(n > 0 && n < 200, "{n}");
        assert!(contains(b"xx/_bench/yy", b"/_bench/"));
        assert!(!contains(b"xx/_bnch/yy", b"/_bench/"));
        assert!(!contains(b"abc", b""));
    }
}

//! Progress bars for uploads and downloads, drawn on stderr.

use std::io::Read;

use indicatif::{ProgressBar, ProgressBarIter, ProgressDrawTarget, ProgressStyle};

/// Bodies smaller than this get no bar.
pub const THRESHOLD: u64 = 1024 * 1024;

/// A bar, or a hidden one: only on a terminal (the caller decides), never
/// with `--json` or `--no-progress`, and only for `len` ≥ [`THRESHOLD`].
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar for `len` bytes labelled `label`; hidden unless `enabled` and
    /// the body is large enough.
    pub fn new(enabled: bool, len: u64, label: &str) -> Self {
        if !enabled || len < THRESHOLD {
            return Self(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        Self(bar)
    }

    /// `reader`, counting its bytes on the bar from 0 (a retry starts over).
    pub fn reader<R: Read>(&self, reader: R) -> ProgressBarIter<R> {
        self.0.set_position(0);
        self.0.wrap_read(reader)
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_and_disabled_bars_are_hidden() {
        assert!(Progress::new(true, THRESHOLD - 1, "x").0.is_hidden());
        assert!(Progress::new(false, THRESHOLD * 10, "x").0.is_hidden());
    }

    #[test]
    fn the_reader_passes_bytes_through_and_counts_them() {
        let p = Progress::new(false, 3, "x");
        let mut out = Vec::new();
        p.reader(&b"abc"[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(p.0.position(), 3);
        // A second reader (a retry) counts from zero again.
        let mut again = Vec::new();
        p.reader(&b"ab"[..]).read_to_end(&mut again).unwrap();
        assert_eq!(p.0.position(), 2);
    }
}

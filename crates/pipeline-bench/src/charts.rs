//! SVG charts of the hot-key storm, written next to the JSON results:
//!
//! - `<stem>-storm-writes.svg`: R2 writes per key per second over the run,
//!   one heat strip per approach (pipeline and naive direct write): a row
//!   per hot key, a cell per second, coloured by how many writes to that
//!   key started in that second. R2 takes one per second per key; a cell
//!   with two or more is a write R2 would have rejected.
//! - `<stem>-storm-lag.svg`: the commit lag of every committed pipeline
//!   write (`committed_at − accepted_at`): a histogram and its cumulative
//!   distribution.
//!
//! The binning is pure and unit-tested; drawing uses plotters' SVG backend
//! only (text is written as SVG `<text>`, so no font library is needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::storm::{StormResult, StormRoute};

/// Writes per key per second: `counts[key row][second]`, seconds from the
/// first write of the approach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteGrid {
    /// Key indexes, one per row.
    pub keys: Vec<usize>,
    /// Writes started in each whole second, per row.
    pub counts: Vec<Vec<u32>>,
    /// Seconds covered (columns).
    pub seconds: usize,
}

impl WriteGrid {
    /// Bins write start times (Unix ms, by key) into whole seconds from
    /// the earliest start of any key.
    #[must_use]
    pub fn of(starts: &BTreeMap<usize, Vec<i64>>) -> Self {
        let t0 = starts.values().flatten().copied().min().unwrap_or(0);
        let last = starts.values().flatten().copied().max().unwrap_or(t0);
        let seconds = usize::try_from((last - t0) / 1000 + 1).unwrap_or(1);
        let mut keys = Vec::new();
        let mut counts = Vec::new();
        for (&k, times) in starts {
            let mut row = vec![0u32; seconds];
            for t in times {
                if let Some(cell) = usize::try_from((t - t0) / 1000)
                    .ok()
                    .and_then(|s| row.get_mut(s))
                {
                    *cell += 1;
                }
            }
            keys.push(k);
            counts.push(row);
        }
        Self {
            keys,
            counts,
            seconds,
        }
    }

    /// The most writes any key had in any one second.
    #[must_use]
    pub fn max(&self) -> u32 {
        self.counts.iter().flatten().copied().max().unwrap_or(0)
    }

    /// Cells (key-seconds) with more than one write: over R2's limit.
    #[must_use]
    pub fn over_limit(&self) -> usize {
        self.counts.iter().flatten().filter(|c| **c > 1).count()
    }
}

/// Equal-width histogram of `samples`: `(from, to, count)` per bin, `bins`
/// bins from 0 to the largest sample (rounded up to a whole `step`).
#[must_use]
pub fn histogram(samples: &[f64], step: f64) -> Vec<(f64, f64, usize)> {
    let max = samples.iter().copied().fold(0.0, f64::max);
    if samples.is_empty() || step <= 0.0 {
        return Vec::new();
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = ((max / step).floor() as usize) + 1;
    let mut bins = vec![0usize; n];
    for s in samples {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((s.max(0.0) / step).floor() as usize).min(n - 1);
        bins[i] += 1;
    }
    bins.into_iter()
        .enumerate()
        .map(|(i, c)| {
            #[allow(clippy::cast_precision_loss)]
            let from = i as f64 * step;
            (from, from + step, c)
        })
        .collect()
}

/// A bin width giving about 40 bins, rounded to 50, 100, 250, 500 ms or a
/// whole number of seconds.
#[must_use]
pub fn bin_step(max_ms: f64) -> f64 {
    let raw = max_ms / 40.0;
    [50.0, 100.0, 250.0, 500.0]
        .into_iter()
        .find(|s| raw <= *s)
        .unwrap_or_else(|| (raw / 1000.0).ceil() * 1000.0)
}

/// The empirical CDF of `samples`: `(value, fraction ≤ value)`, sorted.
#[must_use]
pub fn cdf(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, v)| {
            #[allow(clippy::cast_precision_loss)]
            let f = (i + 1) as f64 / n;
            (*v, f)
        })
        .collect()
}

/// The colour of a heat-strip cell: none, one (within R2's limit), more.
fn cell_colour(count: u32, max: u32) -> RGBColor {
    match count {
        0 => RGBColor(245, 245, 245),
        1 => RGBColor(46, 139, 87),
        c => {
            // Orange at 2 to dark red at the run's maximum.
            let span = f64::from(max.saturating_sub(2).max(1));
            let f = (f64::from(c - 2) / span).min(1.0);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let g = (165.0 * (1.0 - f)) as u8;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let r = (255.0 - 90.0 * f) as u8;
            RGBColor(r, g, 0)
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn draw_strip(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    grid: &WriteGrid,
    max: u32,
    seconds: usize,
) -> Result<(), String> {
    #[allow(clippy::cast_precision_loss)]
    let rows = grid.keys.len().max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let cols = seconds.max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..cols, 0f64..rows)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("seconds into the run")
        .y_desc("hot key")
        .y_labels(grid.keys.len().clamp(2, 17))
        .y_label_formatter(&|y| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = y.floor() as usize;
            grid.keys
                .get(i)
                .map(|k| format!("k{k:02}"))
                .unwrap_or_default()
        })
        .draw()
        .map_err(err)?;
    let cells = grid.counts.iter().enumerate().flat_map(|(row, counts)| {
        counts.iter().enumerate().map(move |(col, c)| {
            #[allow(clippy::cast_precision_loss)]
            let (x, y) = (col as f64, row as f64);
            Rectangle::new(
                [(x, y + 0.08), (x + 0.92, y + 0.92)],
                cell_colour(*c, max).filled(),
            )
        })
    });
    chart.draw_series(cells).map_err(err)?;
    Ok(())
}

/// One approach's panel of the heat strips.
#[derive(Debug, Clone, Copy)]
pub struct Strip<'a> {
    /// `pipeline`, `naive`, …
    pub name: &'a str,
    /// Method and path.
    pub route: &'a str,
    /// Start times of its R2 writes (Unix ms), by key index.
    pub starts: &'a BTreeMap<usize, Vec<i64>>,
}

impl<'a> From<&'a StormRoute> for Strip<'a> {
    fn from(r: &'a StormRoute) -> Self {
        Self {
            name: &r.name,
            route: &r.route,
            starts: &r.write_starts_ms,
        }
    }
}

/// Draws the writes-per-key-per-second heat strips of `routes` (one panel
/// each, one colour scale) to `path`.
///
/// # Errors
/// A message when the SVG cannot be drawn or written.
pub fn write_strips(path: &Path, routes: &[Strip<'_>]) -> Result<(), String> {
    let grids: Vec<WriteGrid> = routes.iter().map(|r| WriteGrid::of(r.starts)).collect();
    let max = grids.iter().map(WriteGrid::max).max().unwrap_or(0);
    let seconds = grids.iter().map(|g| g.seconds).max().unwrap_or(1);
    let rows: usize = grids.iter().map(|g| g.keys.len().max(1)).sum();
    let height = u32::try_from(90 * grids.len() + rows * 18 + 40).unwrap_or(800);
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (legend, body) = root.split_vertically(40);
    legend
        .draw(&Text::new(
            format!(
                "R2 writes per key per second. Grey: none; green: one (R2's limit); \
                 orange to dark red: 2 to {} (R2 would reject all but one)",
                max.max(2)
            ),
            (10, 14),
            ("sans-serif", 14).into_font(),
        ))
        .map_err(err)?;
    let weights: Vec<usize> = grids
        .iter()
        .map(|g| g.keys.len().max(1) * 18 + 90)
        .collect();
    let mut rest = body;
    for (i, (route, grid)) in routes.iter().zip(&grids).enumerate() {
        let title = format!(
            "{} ({}): {} R2 writes, max {} per key-second, {} key-seconds over the limit",
            route.name,
            route.route,
            route.starts.values().map(Vec::len).sum::<usize>(),
            grid.max(),
            grid.over_limit()
        );
        let panel = if i + 1 == routes.len() {
            rest.clone()
        } else {
            let (top, bottom) = rest.split_vertically(u32::try_from(weights[i]).unwrap_or(200));
            rest = bottom;
            top
        };
        draw_strip(&panel, &title, grid, max, seconds)?;
    }
    root.present().map_err(err)
}

/// Draws the commit-lag histogram and CDF of `lags` (ms) to `path`.
///
/// # Errors
/// A message when there are no lags or the SVG cannot be drawn or written.
pub fn write_lag(path: &Path, title: &str, lags: &[f64]) -> Result<(), String> {
    if lags.is_empty() {
        return Err("no commit lags to draw".into());
    }
    let max = lags.iter().copied().fold(0.0, f64::max);
    let step = bin_step(max);
    let bins = histogram(lags, step);
    let x_max = bins.last().map_or(step, |b| b.1);
    #[allow(clippy::cast_precision_loss)]
    let y_max = bins.iter().map(|b| b.2).max().unwrap_or(1) as f64 * 1.1;
    let summary = crate::stats::Summary::of(lags);
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, body) = root.split_vertically(30);
    top.draw(&Text::new(
        format!(
            "{title}: {} committed writes, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            summary.count, summary.p50, summary.p99, summary.max
        ),
        (10, 10),
        ("sans-serif", 15).into_font(),
    ))
    .map_err(err)?;
    let (left, right) = body.split_horizontally(480);

    let mut hist = ChartBuilder::on(&left)
        .caption(format!("histogram ({step:.0} ms bins)"), ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    hist.configure_mesh()
        .x_desc("commit lag (ms)")
        .y_desc("writes")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    hist.draw_series(bins.iter().map(|(from, to, c)| {
        #[allow(clippy::cast_precision_loss)]
        let c = *c as f64;
        Rectangle::new([(*from, 0.0), (*to, c)], RGBColor(70, 110, 180).filled())
    }))
    .map_err(err)?;

    let points = cdf(lags);
    let mut cum = ChartBuilder::on(&right)
        .caption("cumulative distribution", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..x_max, 0f64..1.0)
        .map_err(err)?;
    cum.configure_mesh()
        .x_desc("commit lag (ms)")
        .y_desc("fraction of writes")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(err)?;
    cum.draw_series(LineSeries::new(
        points.iter().copied(),
        RGBColor(70, 110, 180).stroke_width(2),
    ))
    .map_err(err)?;
    for (p, v) in [(0.5, summary.p50), (0.99, summary.p99)] {
        cum.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, p), (v, p), (v, 0.0)],
            RGBColor(200, 80, 60).stroke_width(1),
        )))
        .map_err(err)?;
    }
    root.present().map_err(err)
}

/// The chart paths for results written to `json`: `<stem>-storm-writes.svg`
/// and `<stem>-storm-lag.svg` in the same folder.
#[must_use]
pub fn paths(json: &Path) -> (PathBuf, PathBuf) {
    let stem = json
        .file_stem()
        .map_or_else(|| "bench".into(), |s| s.to_string_lossy().into_owned());
    let dir = json.parent().unwrap_or_else(|| Path::new(""));
    (
        dir.join(format!("{stem}-storm-writes.svg")),
        dir.join(format!("{stem}-storm-lag.svg")),
    )
}

/// Writes both storm charts next to `json`; the paths written.
///
/// # Errors
/// A message naming the chart that could not be written.
pub fn write_storm(json: &Path, storm: &StormResult) -> Result<Vec<PathBuf>, String> {
    let (strips, lag) = paths(json);
    let mut written = Vec::new();
    let routes: Vec<Strip<'_>> = ["pipeline", "naive"]
        .iter()
        .filter_map(|n| storm.route(n))
        .map(Strip::from)
        .collect();
    if !routes.is_empty() {
        write_strips(&strips, &routes).map_err(|e| format!("{}: {e}", strips.display()))?;
        written.push(strips);
    }
    if let Some(p) = storm.route("pipeline") {
        write_lag(&lag, "pipeline commit lag", &p.commit_lags_all_ms)
            .map_err(|e| format!("{}: {e}", lag.display()))?;
        written.push(lag);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_bins_writes_into_seconds_from_the_first() {
        let mut starts = BTreeMap::new();
        starts.insert(0, vec![10_000, 11_000, 11_500, 13_999]);
        starts.insert(3, vec![10_400]);
        let g = WriteGrid::of(&starts);
        assert_eq!(g.keys, vec![0, 3]);
        assert_eq!(g.seconds, 4);
        assert_eq!(g.counts[0], vec![1, 2, 0, 1]);
        assert_eq!(g.counts[1], vec![1, 0, 0, 0]);
        assert_eq!(g.max(), 2);
        assert_eq!(g.over_limit(), 1);
        assert_eq!(WriteGrid::of(&BTreeMap::new()).max(), 0);
    }

    #[test]
    fn histogram_counts_every_sample_once() {
        let h = histogram(&[0.0, 49.0, 50.0, 120.0, 120.0], 50.0);
        assert_eq!(h, vec![(0.0, 50.0, 2), (50.0, 100.0, 1), (100.0, 150.0, 2)]);
        assert!(histogram(&[], 50.0).is_empty());
        assert_eq!(bin_step(1500.0), 50.0);
        assert_eq!(bin_step(9000.0), 250.0);
        assert_eq!(bin_step(100_000.0), 3000.0);
    }

    #[test]
    fn cdf_rises_to_one_in_sorted_order() {
        let c = cdf(&[300.0, 100.0, 200.0, 100.0]);
        assert_eq!(
            c,
            vec![(100.0, 0.25), (100.0, 0.5), (200.0, 0.75), (300.0, 1.0)]
        );
    }

    #[test]
    fn charts_are_svg_with_one_cell_per_key_second_and_one_bar_per_bin() {
        let dir = std::env::temp_dir().join(format!("charts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("run.json");
        let (strips, lag) = paths(&json);
        assert_eq!(strips, dir.join("run-storm-writes.svg"));
        assert_eq!(lag, dir.join("run-storm-lag.svg"));

        let mut paced = BTreeMap::new();
        let mut burst = BTreeMap::new();
        for k in 0..3usize {
            let base = 1_000_000 + i64::try_from(k).unwrap() * 100;
            paced.insert(k, (0..5).map(|s| base + s * 1000).collect::<Vec<i64>>());
            burst.insert(k, (0..10).map(|s| base + s * 250).collect::<Vec<i64>>());
        }
        write_strips(
            &strips,
            &[
                Strip {
                    name: "pipeline",
                    route: "PUT a",
                    starts: &paced,
                },
                Strip {
                    name: "naive",
                    route: "PUT b",
                    starts: &burst,
                },
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&strips).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.contains("<svg"),
            "{}",
            &svg[..100]
        );
        // A cell per key-second of each run: 3 keys × 5 s paced, each one
        // write (green); 3 keys × 3 s of bursts, each over the limit.
        let fill = |c: RGBColor| format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        assert_eq!(svg.matches(&fill(cell_colour(1, 4))).count(), 15, "{svg}");
        let over = svg.matches(&fill(cell_colour(4, 4))).count()
            + svg.matches(&fill(cell_colour(2, 4))).count();
        assert_eq!(over, 9, "{svg}");
        assert!(svg.contains("pipeline (PUT a): 15 R2 writes, max 1 per key-second, 0 key-seconds"));
        assert!(svg.contains("naive (PUT b): 30 R2 writes, max 4 per key-second, 9 key-seconds"));

        let lags: Vec<f64> = (0..200).map(|i| f64::from(i) * 10.0).collect();
        write_lag(&lag, "lag", &lags).unwrap();
        let svg = std::fs::read_to_string(&lag).unwrap();
        assert!(svg.contains("200 committed writes"), "summary line");
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "the CDF line"
        );
        assert!(write_lag(&lag, "lag", &[]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

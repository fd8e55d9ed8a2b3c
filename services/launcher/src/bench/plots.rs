//! SVG plots beside `RESULTS.md`: the initial sync's rate over time (figure 1) and the
//! long-poll lag's distribution (figure 2), per backend.
//!
//! Drawn with plotters' SVG backend alone, without its font features (`ttf`, `ab_glyph`):
//! the SVG backend writes labels as `<text>` elements and leaves the font to the viewer, and
//! without a font library plotters only estimates the labels' widths for the layout, which
//! is all a chart with short labels needs. So the plots cost no system font libraries.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::load::Backend;
use super::replication::Progress;
use super::report::Report;

/// The figure 1 plot's file name.
pub(super) const SYNC_RATE: &str = "sync-rate.svg";
/// The figure 2 plot's file name.
pub(super) const LAG: &str = "lag-cdf.svg";

const SIZE: (u32, u32) = (800, 480);
const COLOURS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];

/// A plot that was written, for `RESULTS.md` to link.
#[derive(Debug, Clone)]
pub(super) struct Plot {
    pub(super) file: &'static str,
    pub(super) title: &'static str,
    /// What it shows, one paragraph.
    pub(super) description: String,
}

/// Decimals of the axes' tick labels, x and y.
type Decimals = (usize, usize);

/// One line of a chart.
#[derive(Debug)]
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// Writes the plots the report has data for into `dir` (which must exist); answers those
/// written. A plot without data is not written, and an old one of that name is removed, so
/// the directory never shows a previous run's plot beside this run's table.
pub(super) fn write(dir: &Path, report: &Report) -> anyhow::Result<Vec<Plot>> {
    let mut written = Vec::new();
    let sync = sync_series(report);
    let path = dir.join(SYNC_RATE);
    if sync.is_empty() {
        remove_stale(&path)?;
    } else {
        let svg = line_chart(
            "Initial sync: customers applied per second",
            "seconds since the copy started",
            "customers/s",
            (1, 0),
            &sync,
        )?;
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(Plot {
            file: SYNC_RATE,
            title: "initial sync rate over time",
            description: format!(
                "Figure 1 over time: customers applied per second on the copy while it syncs, \
                 sampled every 50 ms (the copy's applied records; for PostgreSQL's logical \
                 replication, the rows its table sync's COPY has processed, \
                 `pg_stat_progress_copy`), as the rate over a sliding window of 1/10 of the \
                 sync (0.2 s to 2 s); the repetition with the median time of each. Lines: {}.",
                labels(&sync)
            ),
        });
    }
    let lag = lag_series(report);
    let path = dir.join(LAG);
    if lag.is_empty() {
        remove_stale(&path)?;
    } else {
        let svg = line_chart(
            "Long-poll lag: share of writes seen on the copy's feed within x ms",
            "lag, ms (PUT response → version on the copy's feed)",
            "share of writes",
            (0, 2),
            &lag,
        )?;
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(Plot {
            file: LAG,
            title: "long-poll lag distribution",
            description: format!(
                "Figure 2 as a distribution: every write's lag, sorted (the cumulative share of \
                 writes seen within x ms; p99 is where a line crosses 0.99). Lines: {}.",
                labels(&lag)
            ),
        });
    }
    Ok(written)
}

fn labels(series: &[Series]) -> String {
    series
        .iter()
        .map(|series| series.label.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn remove_stale(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing the old {}", path.display())),
    }
}

fn hiscale_label(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "HiScale SQLite → SQLite",
        Backend::Postgres => "HiScale PostgreSQL → PostgreSQL",
    }
}

fn sync_series(report: &Report) -> Vec<Series> {
    let mut series: Vec<Series> = report
        .replication
        .iter()
        .filter_map(|run| {
            let progress = run.sync.median_progress()?;
            Some(Series {
                label: hiscale_label(run.backend).into(),
                points: rate_curve(progress),
            })
        })
        .collect();
    if let Some(progress) = report.logical.as_ref().and_then(|r| r.median_progress()) {
        series.push(Series {
            label: "PostgreSQL logical replication".into(),
            points: rate_curve(progress),
        });
    }
    series.retain(|series| !series.points.is_empty());
    series
}

fn lag_series(report: &Report) -> Vec<Series> {
    let mut series: Vec<Series> = report
        .replication
        .iter()
        .filter(|run| !run.lag.lags_ms.is_empty())
        .map(|run| Series {
            label: hiscale_label(run.backend).into(),
            points: cumulative(&run.lag.lags_ms),
        })
        .collect();
    if let Some(reference) = report
        .logical
        .as_ref()
        .filter(|reference| !reference.lags_ms.is_empty())
    {
        series.push(Series {
            label: "PostgreSQL logical replication".into(),
            points: cumulative(&reference.lags_ms),
        });
    }
    series
}

/// The empirical distribution of sorted values: (value, share of values up to it).
fn cumulative(sorted: &[f64]) -> Vec<(f64, f64)> {
    let count = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(index, &value)| (value, (index + 1) as f64 / count))
        .collect()
}

/// Records per second over time from cumulative samples: at each sample, the rate since the
/// last sample at least a window earlier. The window is 1/10 of the whole (0.2 s to 2 s), so
/// that one chunk's commit (1000 records) does not read as a spike and a short sync still
/// shows its shape.
/// A sync too short for any window is drawn as its average, flat.
fn rate_curve(progress: &Progress) -> Vec<(f64, f64)> {
    let Some(&(total, applied)) = progress.last() else {
        return Vec::new();
    };
    let window = (total / 10.0).clamp(0.2, 2.0);
    let mut curve = Vec::new();
    let mut earlier = 0;
    for (index, &(at, count)) in progress.iter().enumerate() {
        while earlier + 1 < index && progress[earlier + 1].0 <= at - window {
            earlier += 1;
        }
        let (since, before) = progress[earlier];
        if index > earlier && at - since >= window {
            curve.push((at, count.saturating_sub(before) as f64 / (at - since)));
        }
    }
    if curve.is_empty() && total > 0.0 {
        let average = applied as f64 / total;
        curve = vec![(0.0, average), (total, average)];
    }
    curve
}

/// A line chart of `series` as an SVG document.
fn line_chart(
    caption: &str,
    x_label: &str,
    y_label: &str,
    (x_decimals, y_decimals): Decimals,
    series: &[Series],
) -> anyhow::Result<String> {
    let points = || series.iter().flat_map(|series| series.points.iter());
    let finite = |value: &f64| value.is_finite();
    let x_min = points().map(|p| p.0).filter(finite).fold(0.0, f64::min);
    let x_max = points().map(|p| p.0).filter(finite).fold(0.0, f64::max);
    let y_max = points().map(|p| p.1).filter(finite).fold(0.0, f64::max);
    // Some room above the highest point, and never an empty range.
    let x_max = if x_max > x_min { x_max } else { x_min + 1.0 };
    let y_max = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{x:.x_decimals$}"))
            .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
            .draw()
            .map_err(plot_error)?;
        for (index, line) in series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    line.points
                        .iter()
                        .copied()
                        .filter(|(x, y)| x.is_finite() && y.is_finite()),
                    colour.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_sync_has_a_steady_rate() {
        // 1000 records a second, sampled every 50 ms for 4 s.
        let progress: Progress = (0..=80).map(|n| (n as f64 * 0.05, n * 50)).collect();
        let curve = rate_curve(&progress);
        assert!(!curve.is_empty());
        for (_, rate) in curve {
            assert!((rate - 1000.0).abs() < 1.0, "{rate}");
        }
    }

    #[test]
    fn a_sync_shorter_than_any_window_is_drawn_as_its_average() {
        let progress: Progress = vec![(0.0, 0), (0.05, 500)];
        assert_eq!(rate_curve(&progress), [(0.0, 10_000.0), (0.05, 10_000.0)]);
        assert!(rate_curve(&Vec::new()).is_empty());
    }

    #[test]
    fn the_distribution_ends_at_every_write() {
        assert_eq!(
            cumulative(&[1.0, 2.0, 4.0, 8.0]),
            [(1.0, 0.25), (2.0, 0.5), (4.0, 0.75), (8.0, 1.0)]
        );
    }

    #[test]
    fn a_chart_is_an_svg_with_its_lines() {
        let svg = line_chart(
            "caption",
            "x",
            "y",
            (1, 0),
            &[Series {
                label: "line".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN)],
            }],
        )
        .expect("a chart");
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
        assert!(svg.contains("caption"));
    }
}

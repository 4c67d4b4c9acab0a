//! The benchmark's plots, as SVG: freshness percentiles against offered load, and
//! throughput against users and workers.

use crate::report::Report;
use crate::workload::short;
use plotters::prelude::*;
use std::path::Path;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws the legend at `corner` and writes the file.
fn finish<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    corner: SeriesLabelPosition,
    path: &Path,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(corner)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error(path))?;
    root.present().map_err(plot_error(path))?;
    Ok(())
}

fn plot_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("drawing {}: {e}", path.display())
}

/// `latency.svg`: p50, p99, p99.9 (log scale) against the offered load, per data set and shape (processes x workers).
pub fn latency(report: &Report, path: &Path) -> anyhow::Result<()> {
    let rows = &report.latency_ms;
    let top = rows.iter().map(|r| r.p999.max(r.p99)).fold(1.0, f64::max) * 2.0;
    let low = rows.iter().map(|r| r.p50).fold(f64::MAX, f64::min).clamp(0.001, 1.0) / 2.0;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Freshness against offered load (S1-S6 + J1-J2)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..100f64, (low..top).log_scale())
        .map_err(plot_error(path))?;
    chart
        .configure_mesh()
        .x_desc("offered load, % of the maximum rate")
        .y_desc("due time to complete output, ms")
        .draw()
        .map_err(plot_error(path))?;
    let mut groups: Vec<(String, String)> = rows.iter().map(|r| (r.size.label(), r.shape.label())).collect();
    groups.dedup();
    let mut color = COLORS.iter().cycle();
    for (label, shape) in &groups {
        let mine: Vec<_> = rows.iter().filter(|r| &r.size.label() == label && &r.shape.label() == shape).collect();
        for (name, pick) in [("p50", 0usize), ("p99", 1), ("p99.9", 2)] {
            let c = *color.next().expect("cycle");
            let points: Vec<(f64, f64)> =
                mine.iter().map(|r| (r.load * 100.0, [r.p50, r.p99, r.p999][pick].max(low))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                .map_err(plot_error(path))?
                .label(format!("{name}, {label}, {shape}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled()))).map_err(plot_error(path))?;
        }
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft, path)
}

/// `throughput.svg`: S1-S6 events/s against users (one line per shape), with the
/// no-definitions baseline dashed.
pub fn throughput(report: &Report, path: &Path) -> anyhow::Result<()> {
    let rows = &report.throughput_events_per_s;
    let mut users: Vec<u64> = rows.iter().map(|r| r.size.users).collect();
    users.sort_unstable();
    users.dedup();
    let top = rows.iter().map(|r| r.events_per_s).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error(path))?;
    let n = users.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput against users, per processes x workers", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n - 0.5), 0f64..top)
        .map_err(plot_error(path))?;
    let labels = users.clone();
    chart
        .configure_mesh()
        .x_labels(users.len() * 2 + 1)
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                format!("{} users", short(labels[i as usize]))
            } else {
                String::new()
            }
        })
        .y_desc("events/s")
        .y_label_formatter(&|y| format!("{:.0}k", y / 1e3))
        .draw()
        .map_err(plot_error(path))?;
    let mut shapes: Vec<String> = rows.iter().map(|r| r.shape.label()).collect();
    shapes.sort_unstable();
    shapes.dedup();
    let mut color = COLORS.iter().cycle();
    for w in shapes {
        let c = *color.next().expect("cycle");
        for (definitions, dashed) in [("S1-S6", false), ("no definitions", true)] {
            let points: Vec<(f64, f64)> = users
                .iter()
                .enumerate()
                .filter_map(|(i, u)| {
                    rows.iter()
                        .find(|r| r.shape.label() == w && r.size.users == *u && r.definitions == definitions)
                        .map(|r| (i as f64, r.events_per_s))
                })
                .collect();
            let style = c.stroke_width(if dashed { 1 } else { 3 });
            let series = if dashed {
                chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
            } else {
                chart.draw_series(LineSeries::new(points.clone(), style))
            };
            series
                .map_err(plot_error(path))?
                .label(format!("{definitions}, {w}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled()))).map_err(plot_error(path))?;
        }
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperRight, path)
}

/// `soak.svg`: the server's resident set and data directory against event time, in
/// retentions.
pub fn soak(report: &crate::soak::SoakReport, path: &Path) -> anyhow::Result<()> {
    let mb = |b: u64| b as f64 / 1e6;
    let top = report.samples.iter().map(|s| mb(s.rss_bytes.max(s.data_bytes))).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error(path))?;
    let caption = format!(
        "Soak: {} events of {} users, retention {:.0} days",
        short(report.events),
        short(report.users),
        report.retention_days
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..3.05f64, 0f64..top)
        .map_err(plot_error(path))?;
    chart.configure_mesh().x_desc("event time streamed, retentions").y_desc("MB").draw().map_err(plot_error(path))?;
    let rss: Vec<(f64, f64)> = report.samples.iter().map(|s| (s.retentions, mb(s.rss_bytes))).collect();
    let data: Vec<(f64, f64)> = report.samples.iter().map(|s| (s.retentions, mb(s.data_bytes))).collect();
    for ((name, points), c) in [("resident set", rss), ("data directory", data)].into_iter().zip(COLORS) {
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(plot_error(path))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft, path)
}

//! The experiment's chart (SVG, drawn with plotters): memory by
//! configuration, and startup with a cold against a warm page cache.

use std::path::Path;

use plotters::prelude::*;

use super::report::Report;

const MIB: f64 = 1024.0 * 1024.0;
const COLD: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const WARM: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const AGENTS: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

/// Grouped bars: one group per configuration, one bar per series, on a
/// linear y axis from 0 or (`log`) a logarithmic one, for values that span
/// decades (a host's startup beside a Python process's).
fn bars(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    groups: &[&str],
    series: &[(&str, RGBColor, Vec<f64>)],
    log: bool,
) -> anyhow::Result<()> {
    let values = || series.iter().flat_map(|(_, _, v)| v.iter().copied()).filter(|v| *v > 0.0);
    let top = values().fold(1.0, f64::max) * 1.15;
    if log {
        let base = values().fold(top, f64::min) / 2.0;
        let y = (base..top * 2.0).log_scale();
        draw_bars(area, title, unit, groups, series, y, base)
    } else {
        draw_bars(area, title, unit, groups, series, 0f64..top, 0.0)
    }
}

fn draw_bars<Y>(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    groups: &[&str],
    series: &[(&str, RGBColor, Vec<f64>)],
    y: Y,
    base: f64,
) -> anyhow::Result<()>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..groups.len() as f64, y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < groups.len() {
                groups[i].to_string()
            } else {
                String::new()
            }
        })
        .y_desc(unit)
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (k, (name, color, values)) in series.iter().enumerate() {
        let color = *color;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let x0 = i as f64 + 0.1 + k as f64 * width;
                Rectangle::new([(x0, base), (x0 + width * 0.9, v.max(base))], color.filled())
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// Draws the chart to `path`.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let names: Vec<&str> = report.configs.iter().map(|c| c.name).collect();
    let median = |v: Option<super::report::Stat>| v.map_or(0.0, |s| s.median);
    let pss: Vec<f64> =
        report.configs.iter().map(|c| median(c.memory(|s| s.memory.after_code.pss))).collect();
    let agents: Vec<f64> = report.configs.iter().map(|c| c.agents.total_pss as f64 / MIB).collect();
    bars(
        &left,
        "Memory: PSS after one turn, and with N agents",
        "MiB",
        &names,
        &[
            ("one agent's turn", COLD, pss),
            (&format!("{} agents + host (total)", report.processes), AGENTS, agents),
        ],
        false,
    )?;
    let cold: Vec<f64> = report.configs.iter().map(|c| median(c.startup(true))).collect();
    let warm: Vec<f64> = report.configs.iter().map(|c| median(c.startup(false))).collect();
    bars(
        &right,
        "Startup to the first tool selection (log scale)",
        "ms",
        &names,
        &[("cold page cache", COLD, cold), ("warm page cache", WARM, warm)],
        true,
    )?;
    root.present()?;
    Ok(())
}

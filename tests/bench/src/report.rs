//! The comparison's output: a markdown table with the oxcd/etcd ratio of every row, the
//! headline ratio line, and a PNG chart of the ratios.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use crate::loadgen::Sample;
use crate::systems::System;

/// Where the chart's font is looked for (Debian's fonts-dejavu-core, which the installer adds).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One workload's medians.
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Cluster size.
    pub members: usize,
    /// etcd's median round.
    pub etcd: Sample,
    /// oxcd's median round.
    pub oxcd: Sample,
}

/// A resource measurement (lower is better).
#[derive(Debug, Clone)]
pub struct Resource {
    name: String,
    members: usize,
    etcd: Option<f64>,
    oxcd: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Throughput and latency rows.
    pub rows: Vec<Row>,
    resources: Vec<Resource>,
}

fn ratio(oxcd: f64, etcd: f64) -> f64 {
    if etcd > 0.0 { oxcd / etcd } else { 0.0 }
}

impl Report {
    /// Records a resource value of `system`.
    pub fn resource(&mut self, name: &str, members: usize, system: System, value: f64) {
        let row = match self
            .resources
            .iter_mut()
            .find(|r| r.name == name && r.members == members)
        {
            Some(r) => r,
            None => {
                self.resources.push(Resource {
                    name: name.into(),
                    members,
                    etcd: None,
                    oxcd: None,
                });
                let last = self.resources.len() - 1;
                &mut self.resources[last]
            }
        };
        match system {
            System::Etcd => row.etcd = Some(value),
            System::Oxcd => row.oxcd = Some(value),
        }
    }

    /// The markdown table.
    pub fn markdown(&self, quick: bool) -> String {
        let mut out = String::new();
        let profile = if quick { "quick" } else { "full" };
        let _ = writeln!(
            out,
            "### Throughput and latency ({profile} profile; medians of alternating rounds)\n"
        );
        let _ = writeln!(
            out,
            "| workload | members | etcd QPS | oxcd QPS | oxcd/etcd QPS | etcd p50 / p99 ms | oxcd p50 / p99 ms | oxcd/etcd p99 |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | **{:.2}** | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} |",
                r.workload,
                r.members,
                r.etcd.qps,
                r.oxcd.qps,
                ratio(r.oxcd.qps, r.etcd.qps),
                r.etcd.p50_ms,
                r.etcd.p99_ms,
                r.oxcd.p50_ms,
                r.oxcd.p99_ms,
                ratio(r.oxcd.p99_ms, r.etcd.p99_ms),
            );
        }
        let _ = writeln!(out, "\n### Resources (lower is better)\n");
        let _ = writeln!(out, "| measure | members | etcd | oxcd | oxcd/etcd |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for r in &self.resources {
            let (e, o) = (r.etcd.unwrap_or(0.0), r.oxcd.unwrap_or(0.0));
            let _ = writeln!(
                out,
                "| {} | {} | {e:.1} | {o:.1} | **{:.2}** |",
                r.name,
                r.members,
                ratio(o, e)
            );
        }
        out
    }

    /// `oxcd/etcd txn-put@256: <ratio>` (3 members when measured, else 1).
    pub fn headline(&self) -> String {
        let row = self
            .rows
            .iter()
            .filter(|r| r.workload == "txn-put@256")
            .max_by_key(|r| r.members);
        match row {
            Some(r) => format!(
                "oxcd/etcd txn-put@256: {:.2}",
                ratio(r.oxcd.qps, r.etcd.qps)
            ),
            None => "oxcd/etcd txn-put@256: not measured".into(),
        }
    }

    /// Draws the QPS ratio of every row as a horizontal bar, with the parity line at 1.0.
    pub fn chart(&self, path: &Path) -> Result<()> {
        let font = std::fs::read(FONT).with_context(|| {
            format!("the chart needs the font {FONT} (Debian: fonts-dejavu-core)")
        })?;
        let font: &'static [u8] = Box::leak(font.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, font)
            .map_err(|_| anyhow!("the font {FONT} is unusable"))?;
        let labels: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("{} ({}m)", r.workload, r.members))
            .collect();
        let ratios: Vec<f64> = self
            .rows
            .iter()
            .map(|r| ratio(r.oxcd.qps, r.etcd.qps))
            .collect();
        let max = ratios.iter().copied().fold(1.5f64, f64::max) * 1.1;
        let height = 80 + 28 * labels.len() as u32;
        let root = BitMapBackend::new(path, (1000, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let n = labels.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "oxcd / etcd throughput (same machine, same run; > 1 is oxcd faster)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(300)
            .build_cartesian_2d(0f64..max, (0..n).into_segmented())
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("ratio")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(ratios.iter().enumerate().map(|(i, r)| {
                let color = if *r >= 1.0 {
                    GREEN.mix(0.7)
                } else {
                    RED.mix(0.7)
                };
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (*r, SegmentValue::Exact(i + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(
                [(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
                BLACK.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

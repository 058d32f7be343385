//! The report's section on the seed's quality model (all-mpnet-base-v2):
//! its "separate models" configuration (all-MiniLM-L6-v2 for tools, the
//! quality model for code) and its enterprise unified model (the quality
//! model for both), measured beside the default configurations, with the
//! seed's figures for them ("420MB, ~15ms"; "80MB, ~5ms" for the tool
//! model) and a verdict on each.

use std::fmt::Write as _;

use super::report::{ConfigReport, MIB, Report, Stat, fmt_stat, of, stat};

/// A measured median against the seed's figure: within a quarter of it,
/// or better (lower) or worse (higher) by how much.
fn verdict(claim: f64, measured: Option<Stat>) -> String {
    let Some(m) = measured else { return "not measured".into() };
    let r = m.median / claim;
    if (0.75..=1.25).contains(&r) {
        format!("confirmed ({r:.2}×)")
    } else if r < 1.0 {
        format!("better than the seed ({r:.2}×)")
    } else {
        format!("worse than the seed ({r:.2}×)")
    }
}

impl Report {
    /// The section, when the quality configurations were measured.
    pub(super) fn quality_table(&self, o: &mut String) {
        let rows: Vec<(&ConfigReport, f64, f64, f64)> = [
            // (config, seed disk MB, seed tool query ms, seed code query ms)
            ("separate-quality", 80.0 + 420.0, 5.0, 15.0),
            ("unified-quality", 420.0, 15.0, 15.0),
        ]
        .into_iter()
        .filter_map(|(name, disk, tools, code)| self.config(name).map(|c| (c, disk, tools, code)))
        .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "## The seed's quality model (its \"separate models\" and enterprise configurations)\n"
        );
        let _ = writeln!(
            o,
            "| Configuration | Tool model | Code model | Disk: seed | measured | verdict | Tool query (warm): seed | measured | verdict | Code query (warm): seed | measured | verdict | PSS after a turn | Cold start |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (c, disk, tools, code) in rows {
            let measured_disk = stat([c.disk_bytes as f64 / MIB]);
            let t = of(&c.inference.tools_warm);
            let q = of(&c.inference.code_warm);
            let _ = writeln!(
                o,
                "| {} | `{}` | `{}` | {disk:.0}MB | {} | {} | ~{tools:.0}ms | {} | {} | ~{code:.0}ms | {} | {} | {} | {} |",
                c.name,
                c.tools_model,
                c.code_model,
                fmt_stat(measured_disk, "MiB", 0),
                verdict(disk, measured_disk),
                fmt_stat(t, "ms", 2),
                verdict(tools, t),
                fmt_stat(q, "ms", 2),
                verdict(code, q),
                fmt_stat(c.memory(|s| s.memory.after_code.pss), "MiB", 0),
                fmt_stat(c.startup(true), "ms", 0),
            );
        }
        let _ = writeln!(
            o,
            "\nThe seed's figures are per model (\"all-MiniLM-L6-v2: 80MB, ~5ms\", \"all-mpnet-base-v2: 420MB, ~15ms\"); \
             disk is the configuration's model files; query times are one query's embedding through the host, warm, \
             as in the latency table. A verdict is \"confirmed\" within a quarter of the seed's figure.\n"
        );
    }
}

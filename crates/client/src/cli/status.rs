//! `vembed status`: the host's pid, models, memory, clients, latency and
//! code indexes.

use super::*;

pub(super) fn human_bytes(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

pub(super) fn run(cli: &Cli, json: bool) -> anyhow::Result<()> {
    let mut client = cli.client(None)?;
    let s = client.status()?;
    let upstreams = client.upstreams()?;
    let indexes = client.indexes()?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["upstreams"] = serde_json::to_value(&upstreams)?;
        v["indexes"] = serde_json::to_value(&indexes)?;
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    outln!(
        "vembed host {} (pid {}), up {:.1}s, socket {}",
        s.host_version,
        s.pid,
        s.uptime_ms as f64 / 1000.0,
        s.socket
    )?;
    for m in &s.models {
        let roles: Vec<&str> = m.info.roles.iter().map(|r| r.setting()).collect();
        // A remote model has no weights here: its service's URL instead.
        let source = if m.info.sha256.is_empty() {
            format!("remote {}", m.info.path)
        } else {
            format!("sha256 {}", &m.info.sha256[..12.min(m.info.sha256.len())])
        };
        outln!(
            "  model {} (dim {}, max_seq_length {}, {source}) roles: {}",
            m.info.name,
            m.info.dim,
            m.info.max_seq_length,
            if roles.is_empty() { "-".to_string() } else { roles.join(", ") }
        )?;
        for f in &m.files {
            outln!(
                "    {}: {} of {} in page cache",
                f.path,
                human_bytes(f.resident_bytes),
                human_bytes(f.bytes)
            )?;
        }
    }
    for u in &upstreams {
        outln!(
            "  remote model {}: {} {} (model {:?}, dim {}, concurrency {})",
            u.model,
            u.provider,
            u.url,
            u.remote_model,
            u.dim,
            u.concurrency
        )?;
        outln!(
            "    calls {}, texts {}, errors {}, retries {}, in flight {}; latency p50 {:.1} ms, p99 {:.1} ms",
            u.calls,
            u.texts,
            u.errors,
            u.retries,
            u.in_flight,
            u.latency_p50_us as f64 / 1e3,
            u.latency_p99_us as f64 / 1e3
        )?;
        if let Some(e) = &u.last_error {
            outln!("    last error: {e}")?;
        }
    }
    let mem = s.memory;
    outln!(
        "  memory: pss {}, rss {} (anon {}, file {}), peak rss {}",
        human_bytes(mem.pss),
        human_bytes(mem.rss),
        human_bytes(mem.rss_anon),
        human_bytes(mem.rss_file),
        human_bytes(mem.peak_rss)
    )?;
    outln!(
        "  clients {}, requests {}, texts {}, errors {}, batches {}, queued {}",
        s.clients,
        s.requests,
        s.texts,
        s.errors,
        s.batches,
        s.queue_texts
    )?;
    outln!(
        "  latency in host: p50 {} µs, p99 {} µs; threads {}",
        s.latency_p50_us,
        s.latency_p99_us,
        s.threads
    )?;
    outln!(
        "  embedding cache: {} entries; {} hits, {} from disk, {} embedded",
        s.cache.entries,
        s.cache.hits,
        s.cache.disk_hits,
        s.cache.misses
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for ix in &indexes {
        outln!(
            "  index of {}: {} files, {} snippets, {} ({})",
            ix.root,
            ix.files,
            ix.snippets,
            human_bytes(ix.disk_bytes),
            ix.index_dir
        )?;
        let pids: Vec<String> = ix
            .clients
            .iter()
            .map(|&p| if p == 0 { "http".into() } else { p.to_string() })
            .collect();
        outln!(
            "    {} jobs ({} files embedded), {} searches, last used {}s ago; clients: {}",
            ix.jobs,
            ix.files_embedded,
            ix.searches,
            now.saturating_sub(ix.last_used_unix),
            pids.join(", ")
        )?;
    }
    Ok(())
}

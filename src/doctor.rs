//! `sweep doctor`: what this machine offers. The coordinator's part (version,
//! database, cores, where the worker is) needs no libtorch; the libtorch, CUDA
//! and cuDNN part comes from `sweep-worker probe`. Exit 0 without a GPU or
//! without a worker: both are facts worth printing, not errors.
//! It also says which scripts the installed fonts cover, since a chart label
//! in a script no font has is drawn as empty boxes (`report::plot::fonts`).
use crate::coordinator::launcher::local::{find_worker, gpu_names, probe};
use crate::report::plot::fonts::{self, ScriptCoverage};
use serde::Serialize;
use sweep_protocol::ProbeInfo;

/// Where `sweep-worker` was found, or what was looked at. Serialised as
/// `{"Ok": path}` / `{"Err": reason}`, the shape `--json` has always had.
#[derive(Debug, Serialize)]
pub enum WorkerLookup {
    #[serde(rename = "Ok")]
    Found(String),
    #[serde(rename = "Err")]
    NotFound(String),
}

#[derive(Debug, Serialize)]
pub struct Doctor {
    pub sweep_version: String,
    pub worker: WorkerLookup,
    pub probe: Option<ProbeInfo>,
    pub gpu_names: Vec<String>,
    pub cores: usize,
    pub database: String,
    /// One line per probed script: the font that draws it, if any.
    pub font_scripts: Vec<ScriptCoverage>,
}

pub fn collect(db: &std::path::Path) -> Doctor {
    let worker = find_worker();
    let probe = worker.as_ref().ok().and_then(|w| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(probe(w))
    });
    Doctor {
        sweep_version: env!("CARGO_PKG_VERSION").to_string(),
        worker: match worker {
            Ok(w) => WorkerLookup::Found(w.display().to_string()),
            Err(e) => WorkerLookup::NotFound(e.to_string()),
        },
        gpu_names: if probe.as_ref().is_some_and(|p| p.cuda_available) {
            gpu_names()
        } else {
            vec![]
        },
        probe,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        database: db.display().to_string(),
        font_scripts: fonts::script_coverage(&fonts::system_fonts()),
    }
}

pub fn render(d: &Doctor) -> String {
    let mut s = String::new();
    s.push_str(&format!("sweep          {}\n", d.sweep_version));
    match &d.worker {
        WorkerLookup::Found(w) => s.push_str(&format!("worker         {w}\n")),
        WorkerLookup::NotFound(e) => s.push_str(&format!("worker         not found: {e}\n")),
    }
    match &d.probe {
        Some(p) => {
            s.push_str(&format!(
                "libtorch       {} ({})\n",
                p.libtorch, p.libtorch_lib
            ));
            s.push_str(&format!(
                "CUDA           {}\n",
                if p.cuda_available {
                    format!("available, {} device(s)", p.cuda_devices)
                } else {
                    "not available (CPU only)".into()
                }
            ));
            for (i, n) in d.gpu_names.iter().enumerate() {
                s.push_str(&format!("  cuda:{i}       {n}\n"));
            }
            s.push_str(&format!(
                "cuDNN          {}\n",
                match (p.cudnn_available, p.cudnn_version) {
                    (true, Some(v)) => format!("available (major {v})"),
                    (true, None) => "available".into(),
                    (false, _) => "not available".into(),
                }
            ));
            s.push_str(&format!(
                "CPU threads    {} torch threads, {} cores\n",
                p.cpu_threads, d.cores
            ));
        }
        None if matches!(d.worker, WorkerLookup::Found(_)) => s.push_str(
            "libtorch       the worker's probe failed; run `sweep-worker probe` to see why\n",
        ),
        None => {}
    }
    s.push_str(&format!(
        "backbones      {} (torchvision's)\n",
        sweep_protocol::BACKBONES.join(", ")
    ));
    s.push_str(&format!("database       {}\n", d.database));
    s.push_str(&fonts_text(&d.font_scripts));
    s
}

/// "fonts          Latin, Greek, CJK (Noto Sans CJK SC), …; no font for emoji
/// (install fonts-noto-color-emoji)": the scripts chart labels can be drawn in.
fn fonts_text(scripts: &[ScriptCoverage]) -> String {
    let covered: Vec<String> = scripts
        .iter()
        .filter_map(|c| {
            c.font.as_ref().map(|f| match f.as_str() {
                fonts::PRIMARY_FAMILY => c.script.name().to_string(),
                other => format!("{} ({other})", c.script.name()),
            })
        })
        .collect();
    let missing: Vec<String> = scripts
        .iter()
        .filter(|c| c.font.is_none())
        .map(|c| format!("{} (install {})", c.script.name(), c.package))
        .collect();
    let mut s = format!(
        "fonts          {}\n",
        if covered.is_empty() {
            "none".to_string()
        } else {
            covered.join(", ")
        }
    );
    if !missing.is_empty() {
        s.push_str(&format!(
            "  no font for  {}; chart labels in them show as empty boxes\n",
            missing.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plot::fonts::Script;

    #[test]
    fn fonts_line_names_what_is_covered_and_what_to_install() {
        let cov = |script: Script, font: Option<&str>| ScriptCoverage {
            script,
            sample: 'x',
            font: font.map(String::from),
            package: script.package(),
        };
        let text = fonts_text(&[
            cov(Script::Latin, Some(fonts::PRIMARY_FAMILY)),
            cov(Script::Cjk, None),
            cov(Script::Emoji, Some("Noto Color Emoji")),
        ]);
        assert_eq!(
            text,
            "fonts          Latin, emoji (Noto Color Emoji)\n  no font for  CJK (install fonts-noto-cjk); chart labels in them show as empty boxes\n"
        );
    }
}

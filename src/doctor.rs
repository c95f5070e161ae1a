//! `sweep doctor`: what this machine offers. The coordinator's part (version,
//! database, cores, where the worker is) needs no libtorch; the libtorch, CUDA
//! and cuDNN part comes from `sweep-worker probe`. Exit 0 without a GPU or
//! without a worker: both are facts worth printing, not errors.
use crate::coordinator::launcher::local::{find_worker, gpu_names, probe};
use serde::Serialize;
use sweep_protocol::ProbeInfo;

#[derive(Debug, Serialize)]
pub struct Doctor {
    pub sweep_version: String,
    pub worker: Result<String, String>,
    pub probe: Option<ProbeInfo>,
    pub gpu_names: Vec<String>,
    pub cores: usize,
    pub database: String,
}

pub fn collect(db: &std::path::Path) -> Doctor {
    let worker = find_worker().map_err(|e| e.to_string());
    let probe = worker.as_ref().ok().and_then(|w| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(probe(std::path::Path::new(w)))
    });
    Doctor {
        sweep_version: env!("CARGO_PKG_VERSION").to_string(),
        worker: worker.map(|w| w.display().to_string()),
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
    }
}

pub fn render(d: &Doctor) -> String {
    let mut s = String::new();
    s.push_str(&format!("sweep          {}\n", d.sweep_version));
    match &d.worker {
        Ok(w) => s.push_str(&format!("worker         {w}\n")),
        Err(e) => s.push_str(&format!("worker         not found: {e}\n")),
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
        None if d.worker.is_ok() => s.push_str(
            "libtorch       the worker's probe failed; run `sweep-worker probe` to see why\n",
        ),
        None => {}
    }
    s.push_str(&format!("database       {}\n", d.database));
    s
}

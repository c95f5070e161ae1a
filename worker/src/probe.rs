//! `sweep-worker probe`: what libtorch sees on this machine (version, CUDA
//! devices, cuDNN, threads). Runs in a process of its own, so touching CUDA is
//! fine; the coordinator reads the one JSON line (`ProbeInfo`).
use sweep_protocol::{PROTOCOL_VERSION, ProbeInfo};

/// The lib dir of the libtorch actually loaded (from /proc/self/maps), which
/// differs from the build-time one when LD_LIBRARY_PATH points elsewhere.
pub fn loaded_libtorch_lib() -> std::path::PathBuf {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
        .unwrap_or_else(|| std::path::PathBuf::from(env!("SWEEP_LIBTORCH_LIB")))
}

pub fn libtorch_version() -> String {
    let lib = loaded_libtorch_lib();
    for c in [lib.join("../version.py"), lib.join("../build-version")] {
        if let Ok(text) = std::fs::read_to_string(&c) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("__version__ = ") {
                    return v.trim_matches(|ch| ch == '\'' || ch == '"').to_string();
                }
                if !line.contains('=') && !line.contains(' ') && !line.trim().is_empty() {
                    return line.trim().to_string();
                }
            }
        }
    }
    "unknown".into()
}

fn cudnn_version() -> Option<i64> {
    // tch exposes no cudnn version call; the library file name carries it, e.g. libcudnn.so.9.
    let nvidia = loaded_libtorch_lib().join("../../nvidia/cudnn/lib");
    let rd = std::fs::read_dir(nvidia).ok()?;
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("libcudnn.so."))
                .and_then(|v| v.split('.').next())
                .and_then(|v| v.parse().ok())
        })
        .max()
}

pub fn collect() -> ProbeInfo {
    let cuda = tch::Cuda::is_available();
    let cudnn = tch::Cuda::cudnn_is_available();
    ProbeInfo {
        worker_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        libtorch: libtorch_version(),
        libtorch_lib: loaded_libtorch_lib().display().to_string(),
        cuda_available: cuda,
        cuda_devices: if cuda { tch::Cuda::device_count() } else { 0 },
        cudnn_available: cudnn,
        cudnn_version: if cudnn { cudnn_version() } else { None },
        cpu_threads: tch::get_num_threads(),
    }
}

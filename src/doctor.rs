//! `sweep doctor`: what this machine offers — libtorch, CUDA, cuDNN, threads,
//! the database path. Exit 0 without a GPU: no GPU is a fact, not an error.
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Doctor {
    pub sweep_version: String,
    pub libtorch: String,
    pub libtorch_lib: String,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub gpu_names: Vec<String>,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub cpu_threads: i32,
    pub cores: usize,
    pub database: String,
}

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

/// GPU names via nvidia-smi (the coordinator must never initialise CUDA).
pub fn gpu_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// Runs in a process of its own (doctor or `worker --probe`), so touching CUDA is fine.
pub fn collect(db: &std::path::Path) -> Doctor {
    let cuda = tch::Cuda::is_available();
    let cudnn = tch::Cuda::cudnn_is_available();
    let devices = if cuda { tch::Cuda::device_count() } else { 0 };
    Doctor {
        sweep_version: env!("CARGO_PKG_VERSION").to_string(),
        libtorch: libtorch_version(),
        libtorch_lib: loaded_libtorch_lib().display().to_string(),
        cuda_available: cuda,
        cuda_devices: devices,
        gpu_names: if cuda { gpu_names() } else { vec![] },
        cudnn_available: cudnn,
        cudnn_version: if cudnn { cudnn_version() } else { None },
        cpu_threads: tch::get_num_threads(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        database: db.display().to_string(),
    }
}

fn cudnn_version() -> Option<i64> {
    // tch exposes no cudnn version call; torch.backends.cudnn.version() == at::detail::getCUDAHooks().versionCuDNN().
    // The library file name carries it, e.g. libcudnn.so.9.
    let lib = loaded_libtorch_lib();
    let nvidia = lib.join("../../nvidia/cudnn/lib");
    let rd = std::fs::read_dir(nvidia).ok()?;
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("libcudnn.so.")).and_then(|v| v.split('.').next()).and_then(|v| v.parse().ok()))
        .max()
}

pub fn render(d: &Doctor) -> String {
    let mut s = String::new();
    s.push_str(&format!("sweep          {}\n", d.sweep_version));
    s.push_str(&format!("libtorch       {} ({})\n", d.libtorch, d.libtorch_lib));
    s.push_str(&format!(
        "CUDA           {}\n",
        if d.cuda_available { format!("available, {} device(s)", d.cuda_devices) } else { "not available (CPU only)".into() }
    ));
    for (i, n) in d.gpu_names.iter().enumerate() {
        s.push_str(&format!("  cuda:{i}       {n}\n"));
    }
    s.push_str(&format!(
        "cuDNN          {}\n",
        match (d.cudnn_available, d.cudnn_version) {
            (true, Some(v)) => format!("available (major {v})"),
            (true, None) => "available".into(),
            (false, _) => "not available".into(),
        }
    ));
    s.push_str(&format!("CPU threads    {} torch threads, {} cores\n", d.cpu_threads, d.cores));
    s.push_str(&format!("database       {}\n", d.database));
    s
}

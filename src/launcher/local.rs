//! Local subprocess launcher: `sweep worker --job JSON` (the same binary), or
//! the program named by `SWEEP_WORKER_CMD` (tests use a scripted fake worker).
//!
//! Each worker runs in its own process group (so signals reach its threads and
//! children) and gets SIGKILL when the coordinator dies (PR_SET_PDEATHSIG), so
//! no orphan keeps a GPU busy.
use super::{LaunchSpec, Launcher, Slot};
use std::process::Stdio;

pub struct LocalLauncher {
    pub program: std::path::PathBuf,
    pub prefix_args: Vec<String>,
}

impl LocalLauncher {
    pub fn from_env() -> std::io::Result<LocalLauncher> {
        if let Some(cmd) = std::env::var_os("SWEEP_WORKER_CMD") {
            return Ok(LocalLauncher { program: cmd.into(), prefix_args: vec![] });
        }
        Ok(LocalLauncher { program: std::env::current_exe()?, prefix_args: vec!["worker".into()] })
    }
}

impl Launcher for LocalLauncher {
    fn launch(&self, spec: &LaunchSpec) -> std::io::Result<tokio::process::Child> {
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = std::fs::File::create(&spec.log_path)?;
        let job = serde_json::to_string(&spec.job).map_err(std::io::Error::other)?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.prefix_args).arg("--job").arg(job);
        match &spec.slot {
            Slot::Gpu { index, .. } => {
                cmd.env("CUDA_VISIBLE_DEVICES", index.to_string());
            }
            Slot::Cpu { .. } => {
                // Keep a CPU trial off the GPUs entirely.
                cmd.env("CUDA_VISIBLE_DEVICES", "");
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log)).kill_on_drop(true).process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() == 1 {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        cmd.spawn()
    }
}

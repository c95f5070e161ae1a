//! Makes the `sweep-worker` binary (and the worker crate's test harnesses)
//! self-sufficient against libtorch. Only this crate links libtorch.
//!
//! torch-sys links libtorch but (1) leaves no rpath in the final binary, so it
//! would need `LD_LIBRARY_PATH`, and (2) rustc passes `--as-needed`, so the
//! linker drops `libtorch_cuda.so` (nothing references its symbols directly) and
//! CUDA silently reports unavailable on a GPU machine. We fix both here.
//! The directory comes from torch-sys (`links = "tch"` → `DEP_TCH_LIBTORCH_LIB`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");

    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=torch-sys did not report its libtorch lib dir; no rpath set");
        return;
    };
    println!("cargo:rustc-env=SWEEP_LIBTORCH_LIB={}", lib.display());
    // rpath on every binary (and test harness) so nothing needs LD_LIBRARY_PATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-search=native={}", lib.display());
    for name in ["torch_cuda", "c10_cuda"] {
        if lib.join(format!("lib{name}.so")).exists() {
            println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-l{name},--pop-state");
        }
    }
}

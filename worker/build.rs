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
    autocast_shim(&lib);
    // rpath on every binary (and test harness) so nothing needs LD_LIBRARY_PATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-search=native={}", lib.display());
    for name in ["torch_cuda", "c10_cuda"] {
        if lib.join(format!("lib{name}.so")).exists() {
            println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-l{name},--pop-state");
        }
    }
}

/// `cxx/autocast.cpp`: CUDA autocast through libtorch's non-deprecated
/// functions (see the file). Compiled against the headers of the libtorch
/// torch-sys links (`<lib>/../include`).
fn autocast_shim(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=cxx/autocast.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    // torch-sys's default, and what PyTorch's own wheels are built with.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(&include)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .file("cxx/autocast.cpp")
        .compile("sweep_autocast");
}

//! Link-time glue for libtorch from the PyPI `torch` wheel.
//!
//! torch-sys sets no rpath, and the linker drops `libtorch_cuda.so` because no symbol of it is
//! referenced directly (then CUDA "cannot initialize without ATen_cuda", tch-rs issue 980).
//! With the `tch` feature we read the libtorch directory torch-sys found (`DEP_TCH_LIBTORCH_LIB`)
//! and emit an rpath plus a `--no-as-needed` link of `libtorch_cuda.so` when it exists (not for
//! the `annbatch` binary, which uses no tensors: `./run` builds it without the `tch` feature, so
//! it loads no libtorch at all, ~0.6 s and ~450 MB of RSS saved per command).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let cuda = std::path::Path::new(&lib_dir)
        .join("libtorch_cuda.so")
        .exists();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    // The torch version libtorch came from, for the Python module's import-time check.
    let version_py = std::path::Path::new(&lib_dir).join("../version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    let version = std::fs::read_to_string(&version_py)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ANNBATCH_TORCH_VERSION={version}");
    for kind in ["tests", "examples", "benches"] {
        if cuda {
            println!("cargo:rustc-link-arg-{kind}=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

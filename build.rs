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
    for kind in ["tests", "examples", "benches"] {
        if cuda {
            println!("cargo:rustc-link-arg-{kind}=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

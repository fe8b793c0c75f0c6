//! Link-time glue for libtorch from the PyPI `torch` wheel.
//!
//! torch-sys sets no rpath, and the linker drops `libtorch_cuda.so` because no symbol of it is
//! referenced directly (then CUDA "cannot initialize without ATen_cuda", tch-rs issue 980).
//! With the `tch` feature we read the libtorch directory torch-sys found (`DEP_TCH_LIBTORCH_LIB`)
//! and emit an rpath plus a `--no-as-needed` link of `libtorch_cuda.so` when it exists.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if std::path::Path::new(&lib_dir)
        .join("libtorch_cuda.so")
        .exists()
    {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

//! The one build step a crate using annbatch needs: its binaries find libtorch (from the
//! `torch` wheel annbatch was built against) without `LD_LIBRARY_PATH`, and keep the CUDA
//! library linked when there is one (tch-rs issue 980).
fn main() {
    if let Ok(lib) = std::env::var("DEP_ANNBATCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var_os("DEP_ANNBATCH_TORCH_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

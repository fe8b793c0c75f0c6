//! Link-time glue for libtorch from the PyPI `torch` wheel.
//!
//! torch-sys sets no rpath, and the linker drops `libtorch_cuda.so` because no symbol of it is
//! referenced directly (then CUDA "cannot initialize without ATen_cuda", tch-rs issue 980).
//! With the `tch` feature we read the libtorch directory torch-sys found (`DEP_TCH_LIBTORCH_LIB`)
//! and emit an rpath plus a `--no-as-needed` link of `libtorch_cuda.so` when it exists (not for
//! the `annbatch` binary, which uses no tensors: `./run` builds it without the `tch` feature, so
//! it loads no libtorch at all, ~0.6 s and ~450 MB of RSS saved per command).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(h5_chunk_iter)");
    println!("cargo:rerun-if-changed=build.rs");
    // HDF5 >= 1.14 lists a dataset's chunks in one pass (`H5Dchunk_iter`): `.h5ad` chunk
    // addresses are then taken at once, not one lookup per chunk (hdf5-metno-sys says which
    // versions the library it links has reached).
    println!("cargo:rerun-if-env-changed=DEP_HDF5_VERSION_1_14_0");
    if std::env::var_os("DEP_HDF5_VERSION_1_14_0").is_some() {
        println!("cargo::rustc-cfg=h5_chunk_iter");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // For crates that depend on this one: their build script reads DEP_ANNBATCH_LIBTORCH_LIB
    // (and DEP_ANNBATCH_TORCH_CUDA) to give their binaries the same rpath and CUDA link.
    println!("cargo:libtorch_lib={lib_dir}");
    let cuda = std::path::Path::new(&lib_dir)
        .join("libtorch_cuda.so")
        .exists();
    // Programs built here find libtorch where torch-sys found it (the Python extension links
    // no libtorch: it hands batches over through DLPack).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    tensor_from_dlpack(std::path::Path::new(&lib_dir));
    if cuda {
        println!("cargo:torch_cuda=1");
    }
    for kind in ["tests", "examples", "benches"] {
        if cuda {
            println!("cargo:rustc-link-arg-{kind}=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

/// Compiles `src/tensor/from_dlpack.cpp` (tch tensors made of the loader's DLPack arrays, which
/// tch cannot make) against libtorch's headers, which every libtorch (and every PyPI torch
/// wheel) carries.
fn tensor_from_dlpack(lib_dir: &std::path::Path) {
    let source = "src/tensor/from_dlpack.cpp";
    println!("cargo:rerun-if-changed={source}");
    let include = lib_dir.join("../include");
    if !include.join("ATen/DLConvertor.h").exists() {
        panic!(
            "no libtorch headers under {} (ATen/DLConvertor.h): the `tch` feature compiles a \
             small C++ file against them; use a libtorch or torch wheel that has its include/",
            include.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        // The PyPI torch wheels are built with the C++11 ABI.
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .include(&include)
        .flag_if_supported("-Wno-unused-parameter")
        .file(source)
        .compile("annbatch_tensor_from_dlpack");
}

//! `include/annbatch.h` is what cbindgen generates from `src/capi.rs` (with `cbindgen.toml`):
//! this test fails when the committed header drifts. `ANNBATCH_BLESS=1` rewrites it.
#![cfg(feature = "capi")]

use std::path::Path;

#[test]
fn committed_header_matches_the_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi.rs"))
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8");
    let path = root.join("include/annbatch.h");
    if std::env::var_os("ANNBATCH_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write header");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/annbatch.h is out of date with src/capi.rs: run \
         `ANNBATCH_BLESS=1 cargo test --release --features capi --test capi_header` and commit it"
    );
}

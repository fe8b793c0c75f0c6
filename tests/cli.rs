//! The `annbatch` binary: summaries of real files, and a clear error (exit 1) on bad input.

use std::process::Command;

fn annbatch(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_annbatch"))
        .args(args)
        .output()
        .expect("run annbatch");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    use std::process::Stdio;
    // `annbatch inspect … | head -0`: the reader is gone before the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_annbatch"))
        .args(["inspect", &data("annbatch_collection.zarr")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run annbatch");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn convert_with_the_default_sizes() {
    // The defaults come from ConvertOptions::default() and must parse back as CLI values.
    let (ok, help, _) = annbatch(&["convert", "--help"]);
    assert!(ok);
    assert!(
        help.contains("[default: 20GB]") && help.contains("[default: 1GB]"),
        "{help}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let out = out.to_str().expect("utf-8");
    let (ok, _, stderr) = annbatch(&[
        "convert",
        &data("pbmc68k_raw_csr.v3.zarr"),
        "-o",
        out,
        "--seed",
        "1",
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = annbatch(&["inspect", out]);
    assert!(
        ok && stdout.contains("annbatch collection (1 datasets)"),
        "{stdout}"
    );
}

#[test]
fn inspect_summarises_a_collection() {
    let (ok, stdout, _) = annbatch(&["inspect", &data("annbatch_collection.zarr")]);
    assert!(ok);
    assert!(
        stdout.contains("annbatch collection (3 datasets), n_obs 700, n_var 765"),
        "{stdout}"
    );
    assert!(stdout.contains("cell_type: 10 categories"), "{stdout}");
}

#[cfg(feature = "hdf5")]
#[test]
fn inspect_summarises_an_h5ad() {
    let (ok, stdout, _) = annbatch(&["inspect", &data("oligodendroglioma.h5ad")]);
    assert!(ok);
    assert!(stdout.contains("n_obs 184, n_var 9450, X csr"), "{stdout}");
}

#[test]
fn bad_input_is_an_error_message_and_exit_code_1() {
    let (ok, _, stderr) = annbatch(&["inspect", &data("no_such.zarr")]);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no_such.zarr"),
        "{stderr}"
    );
    let (ok, _, stderr) = annbatch(&[
        "read-bench",
        &data("annbatch_collection.zarr"),
        "--chunk-size",
        "0",
    ]);
    assert!(!ok);
    assert!(stderr.contains("must be positive"), "{stderr}");
}

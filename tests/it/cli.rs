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

/// `n_obs` of the collection at `path`, from `annbatch inspect`.
fn n_obs_of(path: &str) -> u64 {
    let (ok, stdout, stderr) = annbatch(&["inspect", path]);
    assert!(ok, "{stderr}");
    let at = stdout.find("n_obs ").expect("n_obs in the summary") + "n_obs ".len();
    stdout[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[test]
fn two_appends_at_once_both_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let out = out.to_str().expect("utf-8");
    let input = data("pbmc68k_raw_csr.v3.zarr");
    let (ok, _, stderr) = annbatch(&["convert", &input, "-o", out, "--seed", "1", "--quiet"]);
    assert!(ok, "{stderr}");
    let first = n_obs_of(out);
    // Two processes append to the same collection at the same moment: the second waits for
    // the first's lock, then appends to what it published.
    let spawn = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_annbatch"))
            .args(["convert", &input, "-o", out, "--seed", seed])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn("2"), spawn("3"));
    for child in [a, b] {
        let result = child.wait_with_output().expect("wait");
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    assert_eq!(n_obs_of(out), 3 * first, "no append's rows may be lost");
}

#[test]
fn a_non_utf8_entry_is_an_error_message_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c.zarr");
    let (ok, _, stderr) = annbatch(&[
        "convert",
        &data("pbmc68k_raw_csr.v3.zarr"),
        "-o",
        out.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    std::fs::create_dir(out.join(std::ffi::OsStr::from_bytes(b"dataset_\xff"))).expect("mkdir");
    let result = Command::new(env!("CARGO_BIN_EXE_annbatch"))
        .arg("inspect")
        .arg(&out)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not valid UTF-8") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn read_bench_runs_on_a_collection_under_a_non_utf8_path() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = std::ffi::OsStr::from_bytes(b"c\xff.zarr");
    let root = dir.path().join(name);
    let status = Command::new("cp")
        .arg("-r")
        .arg(data("annbatch_collection.zarr"))
        .arg(&root)
        .status()
        .expect("cp");
    assert!(status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_annbatch"))
        .arg("read-bench")
        .arg(&root)
        .args([
            "--chunk-size",
            "16",
            "--preload-nchunks",
            "4",
            "--repeats",
            "1",
        ])
        .output()
        .expect("run annbatch");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("not UTF-8"), "{stdout}");
}

#[test]
fn read_bench_refuses_a_fetch_over_the_memory_limit() {
    // 700 rows of ~250 values: one fetch of 64 chunks of 64 rows reads all ~1.4 MB at once.
    let out = Command::new(env!("CARGO_BIN_EXE_annbatch"))
        .env("ANNBATCH_MEMORY_LIMIT", "1000000")
        .args([
            "read-bench",
            &data("annbatch_collection.zarr"),
            "--chunk-size",
            "64",
            "--preload-nchunks",
            "64",
            "--repeats",
            "1",
        ])
        .output()
        .expect("run annbatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("one batch of 700 rows")
            && stderr.contains("1/2 of ANNBATCH_MEMORY_LIMIT = 1000000 bytes"),
        "{stderr}"
    );
}

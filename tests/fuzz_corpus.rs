//! Replays every input kept under fuzz/ (corpus/<target>/ and regressions/<target>/) through
//! the checks the fuzz targets run, so the properties they found are kept on stable Rust too.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs `check` on every kept input of `target`; the failures name their files.
fn replay(target: &str, check: checks::Check) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    let mut failures = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("the directory is readable").path();
            let data = std::fs::read(&path).expect("a kept input is readable");
            inputs += 1;
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "{target} fails on {failures:#?}");
    inputs
}

#[test]
fn every_kept_fuzz_input_still_keeps_its_properties() {
    for &(target, check) in checks::TARGETS {
        let inputs = replay(target, check);
        assert!(inputs > 0, "{target} has no corpus");
    }
}

#[test]
fn every_fuzz_target_is_replayed_here() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut files: Vec<String> = std::fs::read_dir(targets)
        .expect("fuzz/fuzz_targets is readable")
        .map(|entry| entry.expect("readable").path())
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .collect();
    files.sort();
    let mut replayed: Vec<String> = checks::TARGETS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    replayed.sort();
    assert_eq!(files, replayed);
}

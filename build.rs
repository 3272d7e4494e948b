//! Builds the bundled demo database from penny.sql, and makes a new file under assets/ or a new
//! migration rebuild the crate (include_dir! and embed_migrations! alone only notice changes to
//! files they already embedded).

use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=penny.sql");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    build_bundled_database(&out_dir.join("penny.sqlite"));

    // Each list of files, as an env var the crate reads: when a file is added or removed, the
    // value changes and cargo recompiles the crate, so the macros see the new file.
    for (var, dirs) in [
        ("PENNY_ASSET_FILES", &["assets"][..]),
        (
            "PENNY_MIGRATION_FILES",
            &["src/db/sqlite/migrations", "src/db/postgres/migrations"][..],
        ),
    ] {
        let mut files = Vec::new();
        for dir in dirs {
            println!("cargo:rerun-if-changed={dir}");
            list_files(Path::new(dir), &mut files);
        }
        files.sort();
        println!("cargo:rustc-env={var}={}", files.join(","));
    }
}

fn build_bundled_database(path: &Path) {
    let schema = fs::read_to_string("penny.sql").expect("penny.sql is at the top of the crate");
    let _ = fs::remove_file(path);
    let conn = rusqlite::Connection::open(path).expect("OUT_DIR is writable");
    conn.execute_batch(&schema)
        .expect("penny.sql runs on SQLite");
    conn.execute_batch("VACUUM")
        .expect("VACUUM compacts the file");
}

/// Adds the files under `dir` to `files`; a missing `dir` has none (the container build's
/// dependency layer has no sources yet).
fn list_files(dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("the directory is readable").path();
        if path.is_dir() {
            list_files(&path, files);
        } else {
            files.push(path.display().to_string());
        }
    }
}

//! Builds the bundled demo database from penny.sql, and makes a new file under assets/ rebuild
//! the crate (include_dir! alone only notices changes to files it already embedded).

use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=penny.sql");
    println!("cargo:rerun-if-changed=src/db/sqlite_index.sql");
    println!("cargo:rerun-if-changed=assets");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    build_bundled_database(&out_dir.join("penny.sqlite"));

    // The list of asset files, as an env var the crate reads: when a file is added or removed,
    // the value changes and cargo recompiles the crate, so include_dir! sees the new file.
    let mut files = Vec::new();
    list_files(Path::new("assets"), &mut files);
    files.sort();
    println!("cargo:rustc-env=PENNY_ASSET_FILES={}", files.join(","));
}

fn build_bundled_database(path: &Path) {
    let schema = fs::read_to_string("penny.sql").expect("penny.sql is at the top of the crate");
    let index = fs::read_to_string("src/db/sqlite_index.sql").expect("the index file exists");
    let _ = fs::remove_file(path);
    let conn = rusqlite::Connection::open(path).expect("OUT_DIR is writable");
    conn.execute_batch(&schema)
        .expect("penny.sql runs on SQLite");
    conn.execute_batch(&index).expect("the SQLite index builds");
    conn.execute_batch("VACUUM")
        .expect("VACUUM compacts the file");
}

fn list_files(dir: &Path, files: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("assets/ is readable") {
        let path = entry.expect("assets/ is readable").path();
        if path.is_dir() {
            list_files(&path, files);
        } else {
            files.push(path.display().to_string());
        }
    }
}

//! Builds the bundled demo database from penny.sql and the compressed copies of the assets,
//! makes a new file under assets/ or a new migration rebuild the crate (include_dir! and
//! embed_migrations! alone only notice changes to files they already embedded), and tells the
//! tests which of the programs they drive are here.

use std::path::{Path, PathBuf};
use std::{env, fs};

#[path = "tests/common/tools.rs"]
mod tools;

fn main() {
    println!("cargo:rerun-if-changed=penny.sql");
    mark_what_the_tests_can_use();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    build_bundled_database(&out_dir.join("penny.sqlite"));
    compress_assets(Path::new("assets"), &out_dir.join("compressed"));

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

/// Writes a brotli (`NAME.br`) and a gzip (`NAME.gz`) copy of each file under `assets`, at
/// their best compression, into `out` (src/assets.rs embeds them): a copy that would not be at
/// least a tenth smaller (an .ico, already compressed) is left out, and the file is served as
/// it is. Made once per build, so no request
/// pays for compression.
fn compress_assets(assets: &Path, out: &Path) {
    use std::io::Write;
    let _ = fs::remove_dir_all(out);
    fs::create_dir_all(out).expect("OUT_DIR is writable");
    let mut files = Vec::new();
    list_files(assets, &mut files);
    for file in files {
        let body = fs::read(&file).expect("an asset is readable");
        let name = Path::new(&file)
            .strip_prefix(assets)
            .expect("listed under assets/");
        let target = out.join(name);
        fs::create_dir_all(target.parent().expect("a file has a parent")).expect("writable");

        let mut brotli = Vec::new();
        let params = brotli::enc::BrotliEncoderParams {
            quality: 11,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &body[..], &mut brotli, &params).expect("in memory");
        // No file name and no time in the header: the same file always gives the same bytes.
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(&body).expect("in memory");
        let gzip = gzip.finish().expect("in memory");

        for (suffix, copy) in [("br", brotli), ("gz", gzip)] {
            if copy.len() * 10 <= body.len() * 9 {
                let mut path = target.clone().into_os_string();
                path.push(format!(".{suffix}"));
                fs::write(path, copy).expect("OUT_DIR is writable");
            }
        }
    }
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

/// Sets a cfg for each kind of test whose programs are installed (see tests/common/tools.rs):
/// `penny_postgres` (PostgreSQL's server binaries, or PENNY_TEST_DATABASE_URL for the tests that
/// can use any server), `penny_postgres_server` (binaries to start servers with),
/// `penny_pgbouncer`, `penny_browser` and `penny_ss` (iproute2's ss, which shows a listening
/// socket's backlog). A test that needs a missing one is marked ignored,
/// with the install line as the reason, so that cargo's summary counts it as not run. Under
/// CI=true every cfg is set: there, a missing program fails its tests instead.
fn mark_what_the_tests_can_use() {
    for var in tools::SETTINGS
        .iter()
        .chain(&["PATH", "CI", "PENNY_TEST_DATABASE_URL"])
    {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // Installing a program adds it to a PATH directory (Debian's postgresql puts its wrappers
    // in /usr/bin): a directory that changes makes cargo run this again.
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path).filter(|dir| dir.is_absolute() && dir.is_dir()) {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    }
    if Path::new("/usr/lib/postgresql").is_dir() {
        println!("cargo:rerun-if-changed=/usr/lib/postgresql");
    }
    let ci = env::var("CI").as_deref() == Ok("true");
    let server = tools::postgres_bindir().is_some();
    let any_server = server || env::var_os("PENNY_TEST_DATABASE_URL").is_some();
    let browser = tools::chromium().is_some() && tools::chromedriver().is_some();
    for (cfg, here) in [
        ("penny_postgres", any_server),
        ("penny_postgres_server", server),
        ("penny_pgbouncer", server && tools::pgbouncer().is_some()),
        ("penny_browser", browser),
        ("penny_ss", tools::on_path("ss").is_some()),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if here || ci {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}

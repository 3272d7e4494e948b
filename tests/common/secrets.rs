//! The passwords the tests give Penny, and the check that none of them ever comes back out: not
//! in a response (status line, headers, body), not in a log line (the in-process server's, or a
//! child `penny`'s stdout and stderr), not in an error message. Every part of the harness that
//! sees Penny's output runs it through this check, so a plain `cargo test` checks the whole
//! suite, and any test that makes Penny show a password fails, saying where it showed up.
//!
//! The Postgres tests connect with `postgres::PASSWORD` in DATABASE_URL. Other passwords are
//! registered when a test changes one (`PgServer::set_password`) or hands a child `penny` a
//! DATABASE_URL holding one.
//!
//! Log lines of the in-process server go through a process-wide subscriber at debug level. A
//! line that holds a secret is recorded against the thread that wrote it: each test runs on a
//! thread of its own, and under `#[tokio::test]` so do the server's tasks. The test finds out
//! at its next response, or when its server or database is dropped. A line from any other
//! thread (a blocking pool, a multi-threaded runtime) cannot be traced to one test, so it fails
//! every test that checks after it.

use std::collections::HashSet;
use std::sync::{Mutex, Once};
use std::thread::ThreadId;

/// A shorter secret cannot be told apart from ordinary text, so tests use longer ones.
pub const MIN_SECRET_CHARS: usize = 8;

/// What a leaked secret is replaced with in a failure message.
const MASK: &str = "[secret]";

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Adds `secret` to the passwords that must never appear.
pub fn register(secret: &str) {
    assert!(
        secret.chars().count() >= MIN_SECRET_CHARS,
        "a password given to Penny in a test must have at least {MIN_SECRET_CHARS} characters, \
         or the check for it would find it in ordinary text"
    );
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|known| known == secret) {
        secrets.push(secret.to_owned());
    }
}

/// Registers the password in `url`, if it is a URL with one (`scheme://user:password@host`).
pub fn register_url(url: &str) {
    let Some((_, rest)) = url.split_once("://") else {
        return;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return;
    };
    if let Some((_, password)) = userinfo.split_once(':').filter(|(_, pw)| !pw.is_empty()) {
        register(password);
        let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
        register(&decoded);
    }
}

/// Registers the password of a DATABASE_URL among `env`.
pub fn register_env(env: &[(&str, &str)]) {
    for (name, value) in env {
        if *name == "DATABASE_URL" {
            register_url(value);
        }
    }
}

/// Every spelling of every secret to look for: as it is, and percent-encoded.
fn spellings() -> Vec<String> {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut spellings = Vec::new();
    for secret in
        std::iter::once(super::postgres::PASSWORD).chain(secrets.iter().map(String::as_str))
    {
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for spelling in [secret.to_owned(), encoded.to_lowercase(), encoded] {
            if !spellings.contains(&spelling) {
                spellings.push(spelling);
            }
        }
    }
    spellings
}

/// The lines of `text` that hold a secret, each with the secret masked; empty if none does.
pub fn find(text: &str) -> Vec<String> {
    let spellings = spellings();
    text.lines()
        .filter(|line| {
            spellings
                .iter()
                .any(|secret| line.contains(secret.as_str()))
        })
        .map(|line| mask_with(line, &spellings))
        .collect()
}

/// `text` with every secret in it masked.
pub fn mask(text: &str) -> String {
    mask_with(text, &spellings())
}

fn mask_with(text: &str, spellings: &[String]) -> String {
    spellings.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), MASK)
    })
}

/// Fails the test if `text`, seen at `place`, holds a secret. The message shows the lines
/// that held one, masked (and `place` masked too: it may quote a request that held one).
pub fn check(text: &str, place: &str) {
    let found = find(text);
    if !found.is_empty() {
        panic!(
            "a database password appeared in {} (masked as {MASK}):\n{}",
            mask(place),
            found.join("\n")
        );
    }
}

/// `check` for bytes that may not be UTF-8.
pub fn check_bytes(bytes: &[u8], place: &str) {
    check(&String::from_utf8_lossy(bytes), place);
}

/// Checks what a finished `penny` run printed.
pub fn check_output(output: &std::process::Output, command: &str) {
    check_bytes(&output.stdout, &format!("the stdout of `penny {command}`"));
    check_bytes(&output.stderr, &format!("the stderr of `penny {command}`"));
}

/// Unwraps a result of Penny's library, checking the error's message, cause chain and Debug
/// form before failing with it.
pub fn expect<T, E: std::error::Error>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            let shown = format!("{}\n{err:?}", penny::logging::cause_chain(&err));
            check(&shown, &format!("the error from {what}"));
            panic!("{}: {shown}", mask(what));
        }
    }
}

/// A log line of the in-process server that held a secret.
struct Leak {
    thread: ThreadId,
    thread_name: String,
    masked: Vec<String>,
}

static LEAKS: Mutex<Vec<Leak>> = Mutex::new(Vec::new());
static TEST_THREADS: Mutex<Option<HashSet<ThreadId>>> = Mutex::new(None);

/// Installs the checking log subscriber (once per test binary) and counts the calling thread
/// as a test's own. Every harness entry point calls this.
pub fn watch() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(|| LogLine)
            .with_ansi(false)
            .try_init()
            .expect("no other log subscriber is installed in the tests");
    });
    let thread = std::thread::current();
    // Tokio names its worker and blocking threads so; they serve whichever test comes along.
    if thread.name() != Some("tokio-runtime-worker") {
        let mut threads = TEST_THREADS.lock().unwrap_or_else(|e| e.into_inner());
        threads.get_or_insert_with(HashSet::new).insert(thread.id());
    }
}

/// Where the subscriber writes one formatted event: checked, then dropped.
struct LogLine;

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        record(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records the lines of the log event `text` that hold a secret, against this thread.
pub fn record(text: &str) {
    let masked = find(text);
    if masked.is_empty() {
        return;
    }
    let thread = std::thread::current();
    LEAKS.lock().unwrap_or_else(|e| e.into_inner()).push(Leak {
        thread: thread.id(),
        thread_name: thread.name().unwrap_or("unnamed").to_owned(),
        masked,
    });
}

/// Fails the test if a log line it caused, or one no test can be blamed for, held a secret.
pub fn assert_no_logged_secret() {
    let report = logged_secrets();
    if !report.is_empty() {
        panic!(
            "a database password appeared in a log line of the in-process server (masked as \
             {MASK}):\n{}",
            report.join("\n")
        );
    }
}

/// The masked log lines `assert_no_logged_secret` would fail on, each naming its thread.
fn logged_secrets() -> Vec<String> {
    let this = std::thread::current().id();
    let threads = TEST_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let leaks = LEAKS.lock().unwrap_or_else(|e| e.into_inner());
    leaks
        .iter()
        .filter(|leak| {
            leak.thread == this || !threads.as_ref().is_some_and(|t| t.contains(&leak.thread))
        })
        .flat_map(|leak| {
            leak.masked
                .iter()
                .map(move |line| format!("[thread {}] {line}", leak.thread_name))
        })
        .collect()
}

/// Forgets the log lines this thread recorded: for the test of the check itself.
pub fn forget_this_threads_log_lines() {
    let this = std::thread::current().id();
    LEAKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|leak| leak.thread != this);
}

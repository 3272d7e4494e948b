//! Penny behind PgBouncer in transaction mode, as on Heroku with the PgBouncer buildpack: a
//! real PgBouncer in front of the tests' PostgreSQL, a server pool smaller than Penny's client
//! pools, and the server's own log as the witness that no named prepared statement is used.
//!
//! Needs /usr/sbin/pgbouncer (apt-get install pgbouncer): without it these tests print a loud
//! SKIPPED notice, and under CI=true they fail instead. PgBouncer refuses to run as root, so
//! when the tests run as root it runs as the `postgres` OS user.

mod common;

use common::pgbouncer::{PgBouncer, SERVER_POOL, can_run, pool};
use common::postgres::{PgServer, wait_until};
use common::{RunningPenny, get, init_db, run_penny};
use hyper::StatusCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn start_penny(url: &str, pool_size: &str) -> RunningPenny {
    RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("DATABASE_URL", url), ("PENNY_POOL_SIZE", pool_size)],
        None,
    )
}

/// Penny's log lines at WARN or ERROR.
fn complaints(penny: &RunningPenny) -> Vec<String> {
    penny
        .stdout()
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

fn kernighan() -> Vec<Vec<String>> {
    [
        ["234", "Kernighan", "The C Programming Language"],
        ["123", "Kernighan", "The Practice of Programming"],
    ]
    .iter()
    .map(|row| row.iter().map(|cell| cell.to_string()).collect())
    .collect()
}

/// Checks one response to one of the load's requests; None when it is right.
fn wrong(path: &str, status: StatusCode, body: &str, rows: Vec<Vec<String>>) -> Option<String> {
    if status != StatusCode::OK {
        return Some(format!("{path}: {status}: {body}"));
    }
    let right = match path {
        "/searchresults?author=ker" => rows == kernighan(),
        "/searchresults?author=zz" => {
            rows.is_empty() && body.contains("<strong>Books by zz:</strong> none.")
        }
        "/api/books?author=s" => {
            serde_json::from_str::<serde_json::Value>(body).ok()
                == Some(serde_json::json!([
                    {"isbn": "345", "author": "Sedgewick", "title": "Algorithms in C"}
                ]))
        }
        "/healthz" => body == "ok\n",
        _ => unreachable!("{path}"),
    };
    (!right).then(|| format!("{path}: wrong answer: {body}"))
}

#[cfg_attr(
    not(penny_pgbouncer),
    ignore = "needs PgBouncer and PostgreSQL: apt-get install pgbouncer postgresql, brew install pgbouncer postgresql@15, or set PENNY_TEST_PGBOUNCER"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pennies_share_one_pgbouncer_in_transaction_mode_without_errors() {
    if !can_run() {
        return;
    }
    let server = PgServer::shared();
    let bouncer = PgBouncer::start(server.port);
    let dbname = server.create_database();
    init_db(&server.url(&dbname, "sslmode=disable"));
    // init-db's own connection is closed, but its server process may still be on its way
    // out: the count of backends below must start from PgBouncer's alone.
    let backends = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}'");
    assert!(
        wait_until(Duration::from_secs(5), || server
            .psql("postgres", &backends)
            == "0"),
        "init-db's connection to {dbname} ended"
    );
    let url = bouncer.url(&dbname, "pgbouncer=true&sslmode=disable");
    let pennies = [start_penny(&url, "5"), start_penny(&url, "5")];
    let addrs = [pennies[0].addr, pennies[1].addr];

    // The server's and PgBouncer's view of the connections, sampled while the load runs.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (done, dbname, port) = (done.clone(), dbname.clone(), bouncer.port);
        let count_backends = backends.clone();
        move || {
            let mut most = Sample::default();
            loop {
                let backends = PgServer::shared().psql("postgres", &count_backends);
                let (clients, servers) = pool(port, &dbname);
                most.backends = most.backends.max(backends.parse().unwrap());
                most.clients = most.clients.max(clients);
                most.servers = most.servers.max(servers);
                most.samples += 1;
                if done.load(Ordering::Relaxed) {
                    break;
                }
            }
            most
        }
    });

    const PATHS: [&str; 4] = [
        "/searchresults?author=ker",
        "/api/books?author=s",
        "/searchresults?author=zz",
        "/healthz",
    ];
    let (tasks, per_task) = (16, 50);
    let started = Instant::now();
    let load: Vec<_> = (0..tasks)
        .map(|task| {
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for i in 0..per_task {
                    let addr = addrs[(task + i) % 2];
                    let path = PATHS[(task + i / 2) % PATHS.len()];
                    let response = get(addr, path, &[]).await;
                    let rows = response.table_rows();
                    errors.extend(wrong(path, response.status, &response.body, rows));
                }
                errors
            })
        })
        .collect();
    let mut errors = Vec::new();
    for task in load {
        match task.await {
            Ok(task_errors) => errors.extend(task_errors),
            Err(err) => errors.push(format!("a client task failed: {err}")),
        }
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let most = sampler.join().unwrap();

    assert!(
        errors.is_empty(),
        "{} of {} requests went wrong, e.g. {:#?}\npenny 1: {}\npenny 2: {}\npgbouncer: {}",
        errors.len(),
        tasks * per_task,
        &errors[..errors.len().min(5)],
        pennies[0].stdout(),
        pennies[1].stdout(),
        bouncer.log()
    );
    for penny in &pennies {
        assert_eq!(complaints(penny), Vec::<String>::new());
    }

    // The point of the exercise: more clients than server connections, and never more than
    // SERVER_POOL server connections, as the server, PgBouncer's log and its console all say.
    let (most_open, opened) = bouncer.server_connections(&dbname);
    let (clients, servers) = bouncer.pool(&dbname);
    let backends: usize = server.psql("postgres", &backends).parse().unwrap();
    eprintln!(
        "{} requests through 2 pennies and PgBouncer in {elapsed:?}, all right. \
         Sampled {} times: at most {} backends, {} PgBouncer clients, {} PgBouncer server \
         connections; PgBouncer's log: at most {most_open} open at once, {opened} opened; \
         at the end {clients} clients, {servers} server connections, {backends} backends",
        tasks * per_task,
        most.samples,
        most.backends,
        most.clients,
        most.servers,
    );
    assert!(
        (1..=SERVER_POOL).contains(&most.backends) && backends <= SERVER_POOL,
        "the server saw {} connections to {dbname} at once ({backends} at the end)",
        most.backends
    );
    assert!(
        (1..=SERVER_POOL).contains(&most_open),
        "PgBouncer had {most_open} server connections to {dbname} at once ({opened} opened): {}",
        bouncer.log()
    );
    assert!(
        most.servers <= SERVER_POOL && servers <= SERVER_POOL,
        "SHOW POOLS counted {} server connections to {dbname} ({servers} at the end)",
        most.servers
    );
    assert!(
        most.clients.max(clients) > SERVER_POOL,
        "the pennies never had more connections to PgBouncer ({}) than it has to the server",
        most.clients.max(clients)
    );
}

/// The most of each count seen while sampling.
#[derive(Default)]
struct Sample {
    /// Backends the server had for the test's database (pg_stat_activity).
    backends: usize,
    /// Client connections PgBouncer had for it, in every state (SHOW POOLS).
    clients: usize,
    /// Server connections PgBouncer had for it, in every state (SHOW POOLS).
    servers: usize,
    samples: usize,
}

/// What the server logged for `dbname` after ` LOG:  {what}`, line by line, in order.
fn logged(server: &PgServer, dbname: &str, what: &str) -> Vec<String> {
    let tag = format!(" db={dbname} ");
    let marker = format!(" LOG:  {what}");
    server
        .log()
        .lines()
        .filter(|line| line.contains(&tag))
        .filter_map(|line| line.split_once(&marker).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// The statement names of the searches the server executed in `dbname`, in order, from its
/// log (`execute <unnamed>: SELECT …` or `execute s3: SELECT …`), once at least `at_least`
/// are there (or after 5 s).
fn executed_searches(server: &PgServer, dbname: &str, at_least: usize) -> Vec<String> {
    let searches = || -> Vec<String> {
        logged(server, dbname, "execute ")
            .iter()
            .filter_map(|rest| rest.split_once(": "))
            .filter(|(_, sql)| sql.starts_with("SELECT coalesce(isbn, ''), coalesce(author, '')"))
            .map(|(name, _)| name.to_string())
            .collect()
    };
    wait_until(Duration::from_secs(5), || searches().len() >= at_least);
    searches()
}

/// Every statement the server executed in `dbname` through the extended protocol, by name.
fn executed_statements(server: &PgServer, dbname: &str) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for rest in logged(server, dbname, "execute ") {
        let name = rest
            .split_once(": ")
            .map_or(rest.as_str(), |(name, _)| name);
        *names.entry(name.to_string()).or_insert(0) += 1;
    }
    names
}

/// The statements in `dbname` that changed how the server plans (`plan_cache_mode`).
fn plan_settings(server: &PgServer, dbname: &str) -> Vec<String> {
    let mut settings = logged(server, dbname, "statement: ");
    settings.retain(|sql| sql.contains("plan_cache_mode"));
    settings
}

/// Runs `searches` searches for "ker" on `penny`, each answered with both Kernighans.
async fn search_kernighan(penny: &RunningPenny, searches: usize) {
    for _ in 0..searches {
        let page = get(penny.addr, "/searchresults?author=ker", &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.table_rows(), kernighan());
    }
}

#[cfg_attr(
    not(penny_pgbouncer),
    ignore = "needs PgBouncer and PostgreSQL: apt-get install pgbouncer postgresql, brew install pgbouncer postgresql@15, or set PENNY_TEST_PGBOUNCER"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_are_kept_off_the_pgbouncer_path() {
    if !can_run() {
        return;
    }
    let server = PgServer::shared();
    let bouncer = PgBouncer::start(server.port);
    const SEARCHES: usize = 4;

    // Through PgBouncer: every search is the unnamed statement, parsed afresh each time.
    let via_bouncer = server.create_database();
    init_db(&server.url(&via_bouncer, "sslmode=disable"));
    server.psql(
        "postgres",
        &format!("ALTER DATABASE {via_bouncer} SET log_statement = 'all'"),
    );
    let url = bouncer.url(&via_bouncer, "pgbouncer=true&sslmode=disable");
    let penny = start_penny(&url, "2");
    search_kernighan(&penny, SEARCHES).await;
    let searches = executed_searches(server, &via_bouncer, SEARCHES);
    assert_eq!(
        searches,
        vec!["<unnamed>"; SEARCHES],
        "the searches through PgBouncer, by statement name"
    );
    let statements = executed_statements(server, &via_bouncer);
    assert_eq!(
        statements.keys().collect::<Vec<_>>(),
        ["<unnamed>"],
        "every statement executed through PgBouncer, by name"
    );
    // Nothing is set on a session that PgBouncer hands on to other clients.
    assert_eq!(plan_settings(server, &via_bouncer), Vec::<String>::new());
    assert_eq!(complaints(&penny), Vec::<String>::new());

    // Directly: one connection prepares the search once, as a named statement, and reuses it.
    let direct = server.create_database();
    server.psql(
        "postgres",
        &format!("ALTER DATABASE {direct} SET log_statement = 'all'"),
    );
    let url = server.url(&direct, "sslmode=disable");
    init_db(&url);
    let penny = start_penny(&url, "1");
    search_kernighan(&penny, SEARCHES).await;
    let searches = executed_searches(server, &direct, SEARCHES);
    assert_eq!(searches.len(), SEARCHES, "{searches:?}");
    let name = &searches[0];
    assert!(
        name.strip_prefix('s')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        "a direct search runs a named statement, not {name:?}"
    );
    assert_eq!(
        searches,
        vec![name.clone(); SEARCHES],
        "the direct searches reuse one prepared statement"
    );
    // The one connection is told once to plan the statement once.
    assert_eq!(
        plan_settings(server, &direct),
        ["SET plan_cache_mode = force_generic_plan"]
    );
    assert_eq!(complaints(&penny), Vec::<String>::new());
}

#[cfg_attr(
    not(penny_pgbouncer),
    ignore = "needs PgBouncer and PostgreSQL: apt-get install pgbouncer postgresql, brew install pgbouncer postgresql@15, or set PENNY_TEST_PGBOUNCER"
)]
#[test]
fn init_db_through_pgbouncer_refuses_in_one_line_and_names_the_direct_url() {
    if !can_run() {
        return;
    }
    let server = PgServer::shared();
    let bouncer = PgBouncer::start(server.port);
    let dbname = server.create_database();
    let url = bouncer.url(&dbname, "pgbouncer=true&sslmode=disable");
    let output = run_penny(&["init-db"], &[("DATABASE_URL", &url)], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not through PgBouncer"), "{stderr}");
    assert_eq!(
        server.psql(&dbname, "SELECT to_regclass('books') IS NULL"),
        "t",
        "nothing was changed"
    );
}

#[cfg_attr(
    not(penny_pgbouncer),
    ignore = "needs PgBouncer and PostgreSQL: apt-get install pgbouncer postgresql, brew install pgbouncer postgresql@15, or set PENNY_TEST_PGBOUNCER"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_pgbouncer_true_penny_finds_out_fails_no_request_and_says_what_to_set() {
    if !can_run() {
        return;
    }
    let server = PgServer::shared();
    let bouncer = PgBouncer::start(server.port);
    let dbname = server.create_database();
    init_db(&server.url(&dbname, "sslmode=disable"));
    // Nobody said this is PgBouncer: Penny prepares statements, which the server connection
    // it lands on for the next query may not have (or may have under another client's name).
    let url = bouncer.url(&dbname, "sslmode=disable");
    let penny = start_penny(&url, "8");
    let mut wrong_answers = Vec::new();
    for _ in 0..25 {
        let answers = common::get_at_once(penny.addr, "/searchresults?author=ker", 16).await;
        for (page, _) in answers {
            if page.status != StatusCode::OK || page.table_rows() != kernighan() {
                wrong_answers.push(format!("{}: {}", page.status, page.body));
            }
        }
    }
    let warnings = complaints(&penny);
    assert!(wrong_answers.is_empty(), "{wrong_answers:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("pgbouncer=true"), "{warnings:?}");
}

//! Penny on Heroku: the lecture's deploy order, step by step, and what Heroku's router asks of
//! an app behind it.

mod common;

use common::postgres::PgServer;
use common::{RunningPenny, run_penny};
use hyper::StatusCode;
use std::time::Duration;

/// The lecture deploys the app, then attaches Heroku Postgres, then loads penny.sql with psql,
/// then opens the app. Each step here is what Heroku does at that point: the release phase runs
/// `penny init-db` with no database; the dyno restarts with DATABASE_URL naming an empty one;
/// psql loads penny.sql while that Penny runs.
#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn the_lecture_s_deploy_order_works_at_every_step() {
    if !common::postgres::available() {
        return;
    }
    // 1. The first deploy: the release phase, then the web dyno, with no database yet.
    let release = run_penny(&["init-db"], &[], None);
    assert!(release.status.success(), "{release:?}");
    let said = String::from_utf8_lossy(&release.stdout);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("bundled demo"), "{said}");
    let demo = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
    let page = common::get(demo.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("The Practice of Programming"));
    drop(demo);

    // 2. Heroku Postgres is attached: the dyno restarts with DATABASE_URL, the database empty.
    let server = PgServer::shared();
    let dbname = server.create_database();
    let url = server.url(&dbname, "sslmode=disable");
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    assert_eq!(
        common::get(penny.addr, "/", &[]).await.status,
        StatusCode::OK
    );
    for _ in 0..3 {
        let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        let text = page.text();
        assert!(text.contains("No books yet"), "{text}");
        assert!(text.contains("heroku run penny init-db"), "{text}");
        assert!(text.contains("-f penny.sql"), "{text}");
        assert!(!text.contains("relation"), "no SQL error is shown: {text}");
        let api = common::get(penny.addr, "/api/books?author=ker", &[]).await;
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(api.body.contains("penny init-db"), "{}", api.body);
    }
    let log = penny.wait_for_log("not set up for Penny", Duration::from_secs(5));
    assert_eq!(
        log.matches("not set up for Penny").count(),
        1,
        "one log line, not one per request: {log}"
    );
    assert!(log.contains("heroku run penny init-db"), "{log}");

    // 3. The lecture loads penny.sql with psql, while that Penny runs.
    let penny_sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("penny.sql");
    server.psql_file(&dbname, &penny_sql);

    // 4. It opens the app: the same Penny, not restarted, finds the books.
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.body.contains("The Practice of Programming"));
    penny.wait_for_log("reachable again", Duration::from_secs(5));

    // The next deploy's release phase finds the database penny.sql made, and keeps its books.
    let release = run_penny(&["init-db"], &[("DATABASE_URL", &url)], None);
    assert!(release.status.success(), "{release:?}");
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert!(page.body.contains("The Practice of Programming"));
}

/// Heroku's router sends `X-Request-Id` and logs it; Penny logs it too and sends it back. A
/// request without one gets one made up, and a 5xx page shows it for the visitor to quote.
#[tokio::test]
async fn every_answer_carries_a_request_id_that_its_log_line_has_and_5xx_pages_show() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("penny.sqlite");
    let url = format!("sqlite://{}", file.display());
    common::init_db(&url);
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);

    let routers = "f9ed4675-f4d6-4d82-a5a1-43e6f4d28fd0";
    let page = common::get(penny.addr, "/", &[("x-request-id", routers)]).await;
    assert_eq!(page.header("x-request-id"), routers);
    assert!(!page.body.contains(routers), "a 200 page does not show it");

    let made = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    let made_id = made.header("x-request-id").to_owned();
    assert_eq!(made_id.len(), 32, "{made_id}");
    let unsafe_one = common::get(penny.addr, "/", &[("x-request-id", "a b\"c")]).await;
    assert_ne!(unsafe_one.header("x-request-id"), "a b\"c");
    assert_eq!(unsafe_one.header("x-request-id").len(), 32);

    let missing = common::get(penny.addr, "/nope", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(!missing.text().contains("Request ID"), "{}", missing.text());

    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("DROP TABLE books")
        .unwrap();
    let failed = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    let failed_id = failed.header("x-request-id").to_owned();
    assert!(
        failed.text().contains(&format!("Request ID: {failed_id}")),
        "{}",
        failed.text()
    );
    let api = common::get(
        penny.addr,
        "/api/books?author=ker",
        &[("x-request-id", routers)],
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["request_id"], routers, "{json}");

    let log = penny.wait_for_log(&failed_id, Duration::from_secs(5));
    for id in [routers, made_id.as_str(), failed_id.as_str()] {
        let line = log
            .lines()
            .find(|line| line.contains(&format!("request_id=\"{id}\"")))
            .unwrap_or_else(|| panic!("no log line with {id}: {log}"));
        assert!(line.contains("status="), "{line}");
    }
}

const APP_HOST: &str = "penny-demo.herokuapp.com";

/// A request as Heroku's router passes it on: the app's host name, and how the visitor came.
fn routed(proto: &str) -> [(&'static str, &str); 2] {
    [("host", APP_HOST), ("x-forwarded-proto", proto)]
}

#[tokio::test]
async fn behind_heroku_s_router_http_is_redirected_to_https_and_https_answers_carry_hsts() {
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DYNO", "web.1")], None);
    let search = "/searchresults?author=g%C3%B6del";

    for path in [
        search,
        "/",
        "/static/penny.css",
        "/api/books?author=ker",
        "/nope",
    ] {
        let page = common::get(penny.addr, path, &routed("http")).await;
        assert_eq!(page.status, StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(page.header("location"), format!("https://{APP_HOST}{path}"));
        assert!(
            page.headers.get("strict-transport-security").is_none(),
            "not over http"
        );
        assert_eq!(page.header("x-content-type-options"), "nosniff");
    }
    // A request with another method than GET, as the router passes it on over http.
    let over_http = |method: &str, path: &str| {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", APP_HOST)
            .header("x-forwarded-proto", "http")
            .body(Default::default())
            .unwrap();
        common::send(penny.addr, request)
    };
    let head = over_http("HEAD", search).await;
    assert_eq!(head.status, StatusCode::PERMANENT_REDIRECT);
    let with_port = [
        ("host", "penny-demo.herokuapp.com:80"),
        ("x-forwarded-proto", "http"),
    ];
    let page = common::get(penny.addr, "/", &with_port).await;
    assert_eq!(page.header("location"), format!("https://{APP_HOST}/"));

    // Where the redirect leads: served, with HSTS and a Secure cookie, and no second redirect.
    let page = common::get(penny.addr, search, &routed("https")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("strict-transport-security"), "max-age=31536000");
    assert!(
        page.header("set-cookie").contains("Secure"),
        "{}",
        page.header("set-cookie")
    );
    assert!(page.body.contains("Gödel"));
    let css = common::get(penny.addr, "/static/penny.css", &routed("https")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("strict-transport-security"), "max-age=31536000");

    // Health probes are plain http, and so is a request that never passed a proxy.
    let health = common::get(penny.addr, "/healthz", &routed("http")).await;
    assert_eq!(health.status, StatusCode::OK);
    let direct = common::get(penny.addr, search, &[]).await;
    assert_eq!(direct.status, StatusCode::OK);
    assert!(direct.headers.get("strict-transport-security").is_none());

    // A method other than GET or HEAD gets its 405, not a redirect that would turn it into a GET.
    let post = over_http("POST", "/searchresults").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn https_only_is_off_on_a_plain_run_and_can_be_set_either_way() {
    for (env, redirects) in [
        (&[][..], false),
        (
            &[("DYNO", "web.1"), ("PENNY_HTTPS_ONLY", "false")][..],
            false,
        ),
        (&[("PENNY_HTTPS_ONLY", "true")][..], true),
    ] {
        let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], env, None);
        let page = common::get(penny.addr, "/", &routed("http")).await;
        let expected = if redirects {
            StatusCode::PERMANENT_REDIRECT
        } else {
            StatusCode::OK
        };
        assert_eq!(page.status, expected, "{env:?}");
        let secure = common::get(penny.addr, "/", &routed("https")).await;
        assert_eq!(
            secure.headers.contains_key("strict-transport-security"),
            redirects,
            "{env:?}"
        );
    }
    let output = run_penny(&[], &[("PENNY_HTTPS_ONLY", "maybe")], None);
    common::assert_one_clear_line(&output, &["PENNY_HTTPS_ONLY", "true or false"]);
}

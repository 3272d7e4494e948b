//! The harness's password check, shown to catch what it is there for: a password in a page, a
//! header, a log line of the in-process server, a child's output or an error message, in any
//! spelling the check knows, without ever printing the password in its own message. The check
//! runs under every test of the suite; these tests make sure it cannot pass by doing nothing.

mod common;

use common::postgres::PASSWORD;
use common::{Backend, TestApp, TestResponse, run_penny, secrets};
use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderValue};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The message `check` failed with, or None if it passed.
fn failure(check: impl FnOnce()) -> Option<String> {
    catch_unwind(AssertUnwindSafe(check))
        .err()
        .map(|payload| panic_message(payload.as_ref()))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_default()
}

/// The check failed, naming `place` and showing `masked`, and without the password itself.
fn assert_caught(message: Option<String>, place: &str, masked: &str) {
    let message = message.unwrap_or_else(|| panic!("the password in {place} went unnoticed"));
    assert!(
        !message.contains(PASSWORD) && !message.contains("Rotated-pw-2718"),
        "the failure message repeats the password: {}",
        secrets::mask(&message)
    );
    assert!(message.contains(place), "{message}");
    assert!(message.contains(masked), "{message}");
}

#[test]
fn text_without_a_password_passes() {
    for text in [
        "",
        "Penny is serving PostgreSQL database d on 127.0.0.1:5432 as postgres",
        "postgres://postgres:…@127.0.0.1/d",
        &PASSWORD[..PASSWORD.len() - 1],
    ] {
        assert_eq!(failure(|| secrets::check(text, "a test")), None, "{text}");
    }
}

#[test]
fn the_password_is_caught_as_it_is_and_percent_encoded_and_masked_in_the_message() {
    let encoded = utf8_percent_encode(PASSWORD, NON_ALPHANUMERIC).to_string();
    assert_ne!(encoded, PASSWORD, "the test needs a password that encodes");
    for (text, masked) in [
        (
            format!("2024-01-01 ERROR cause=\"password {PASSWORD} rejected\""),
            "cause=\"password [secret] rejected\"",
        ),
        (
            format!("location: /x?p={encoded}"),
            "location: /x?p=[secret]",
        ),
        (
            format!("first line\nlink: </x?p={}>", encoded.to_lowercase()),
            "link: </x?p=[secret]>",
        ),
    ] {
        assert_caught(
            failure(|| secrets::check(&text, "a place")),
            "a database password appeared in a place",
            masked,
        );
    }
    // The place is masked too: it may quote the request that carried the password.
    assert_caught(
        failure(|| secrets::check(PASSWORD, &format!("the answer to GET /?q={PASSWORD}"))),
        "the answer to GET /?q=[secret]",
        "[secret]",
    );
}

#[test]
fn passwords_registered_by_the_tests_are_caught_too() {
    assert_eq!(failure(|| secrets::check("Rotated-pw-2718", "x")), None);
    secrets::register("Rotated-pw-2718");
    assert_caught(
        failure(|| secrets::check("auth Rotated-pw-2718 failed", "a log")),
        "a log",
        "auth [secret] failed",
    );
    // From a DATABASE_URL handed to a child penny, also percent-decoded.
    secrets::register_env(&[("DATABASE_URL", "postgres://u:Url-pw-%2F9911@h:5432/d")]);
    for text in ["Url-pw-%2F9911", "Url-pw-/9911"] {
        assert!(failure(|| secrets::check(text, "x")).is_some(), "{text}");
    }
    // A password too short to tell apart from ordinary text is refused, not left unchecked.
    assert!(failure(|| secrets::register("pw")).is_some());
    assert!(failure(|| secrets::register_url("postgres://u:pw@h/d")).is_some());
}

#[test]
fn a_response_is_checked_in_its_headers_and_its_body() {
    let response = |header: &str, body: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("set-cookie", HeaderValue::from_str(header).unwrap());
        TestResponse {
            status: StatusCode::OK,
            headers,
            body: body.to_owned(),
            bytes: body.to_owned().into(),
        }
    };
    let check = |response: TestResponse| failure(move || response.check_for_secrets("a reply"));
    assert_eq!(check(response("a=1", "<p>ok</p>")), None);
    assert_caught(
        check(response(&format!("a={PASSWORD}"), "<p>ok</p>")),
        "a header of a reply",
        "set-cookie: a=[secret]",
    );
    assert_caught(
        check(response("a=1", &format!("<p>{PASSWORD}</p>"))),
        "the body of a reply",
        "<p>[secret]</p>",
    );
}

#[test]
fn a_library_error_is_checked_before_the_test_fails_with_it() {
    let err = std::io::Error::other(format!("could not log in with {PASSWORD}"));
    assert_caught(
        failure(|| {
            secrets::expect::<(), _>(Err(err), "opening the database");
        }),
        "the error from opening the database",
        "could not log in with [secret]",
    );
}

#[test]
fn a_debug_line_of_the_in_process_log_is_caught_and_only_fails_its_own_test() {
    secrets::watch();
    assert_eq!(failure(secrets::assert_no_logged_secret), None);
    tracing::debug!(url = %format!("postgres://u:{PASSWORD}@h/d"), "connecting");
    let caught = failure(secrets::assert_no_logged_secret);
    // Another test's thread is not blamed for this one's log line.
    let elsewhere = std::thread::spawn(|| {
        secrets::watch();
        failure(secrets::assert_no_logged_secret)
    })
    .join()
    .unwrap();
    secrets::forget_this_threads_log_lines();
    assert_caught(
        caught,
        "a log line of the in-process server",
        "url=postgres://u:[secret]@h/d",
    );
    assert_eq!(elsewhere, None);
    assert_eq!(failure(secrets::assert_no_logged_secret), None);
}

#[tokio::test]
async fn a_page_and_a_log_line_of_a_real_server_are_caught() {
    let app = TestApp::start(Backend::Bundled).await;
    // The author comes back on the page and in the cookie.
    let addr = app.addr;
    let path = format!("/searchresults?author={PASSWORD}");
    let echoed = tokio::spawn(async move { common::get(addr, &path, &[]).await }).await;
    assert_caught(
        echoed
            .err()
            .map(|err| panic_message(err.into_panic().as_ref())),
        "a header of the response to GET /searchresults?author=[secret]",
        "set-cookie: prev_author=[secret];",
    );
    // A request id goes into the log line of the request.
    let logged = tokio::spawn(common::get(
        app.addr,
        "/healthz",
        &[("x-request-id", PASSWORD)],
    ))
    .await;
    secrets::forget_this_threads_log_lines();
    assert_caught(
        logged
            .err()
            .map(|err| panic_message(err.into_panic().as_ref())),
        "a log line of the in-process server",
        "request_id=\"[secret]\"",
    );
    // So does a raw request's answer.
    let request = format!(
        "GET /searchresults?author={PASSWORD} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
    );
    let raw = tokio::spawn(async move { common::raw(addr, request.as_bytes()).await }).await;
    assert_caught(
        raw.err()
            .map(|err| panic_message(err.into_panic().as_ref())),
        "the raw answer to",
        "prev_author=[secret]",
    );
    secrets::forget_this_threads_log_lines();
}

#[test]
fn what_a_child_penny_prints_is_caught() {
    // clap repeats an argument it cannot parse on stderr.
    assert_caught(
        failure(|| {
            run_penny(&["--bind", PASSWORD], &[], None);
        }),
        "the stderr of `penny --bind [secret]`",
        "[secret]",
    );
    assert_caught(
        failure(|| {
            common::RunningPenny::start(&["--bind", PASSWORD], &[], None);
        }),
        "the stderr of penny, which exited at start",
        "[secret]",
    );
}

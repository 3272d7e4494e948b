//! Hostile input: malformed and smuggling-shaped HTTP over raw sockets, CRLF injection through
//! the author (into the cookie and the API's Link header) and the `prev_author` cookie, and
//! lists of XSS and SQL-injection payloads sent through every place an author can go. Penny must
//! answer each with a 4xx, a page that shows the payload as text, or a closed connection: never a
//! 5xx, never a hang, never an injected header, never a file from outside assets/, and its
//! database must come out intact.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod checks;
mod crlf_injection;
mod malformed_http;
mod raw;
mod xss_and_sql_injection;

use common::Backend;
use crlf_injection::{
    an_author_never_breaks_out_of_the_link_header,
    crlf_in_the_author_or_the_cookie_never_becomes_a_response_header,
};
use xss_and_sql_injection::{
    a_nul_escaped_into_a_page_link_never_gets_a_server_error,
    books_whose_author_is_a_payload_round_trip_exactly_and_are_escaped,
    payloads_in_page_links_are_plain_text_too,
    sql_injection_payloads_are_searched_for_as_plain_text,
    xss_payloads_are_shown_as_text_on_every_page_and_as_json_in_the_api,
};

suite! {
    read_only: [
        crlf_in_the_author_or_the_cookie_never_becomes_a_response_header,
        xss_payloads_are_shown_as_text_on_every_page_and_as_json_in_the_api,
        sql_injection_payloads_are_searched_for_as_plain_text,
        payloads_in_page_links_are_plain_text_too,
        a_nul_escaped_into_a_page_link_never_gets_a_server_error,
    ],
    writable: [
        books_whose_author_is_a_payload_round_trip_exactly_and_are_escaped,
        an_author_never_breaks_out_of_the_link_header,
    ],
}

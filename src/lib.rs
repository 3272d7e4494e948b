//! Penny: a book-search web app in one small binary, on PostgreSQL or SQLite.
//!
//! Layout:
//! - `config`: settings from the environment; DATABASE_URL parsed once into a typed value.
//! - `server`: binding, the accept loop, per-request logging, stalled connections and graceful
//!   shutdown.
//! - `routes`: one match from path to handler; errors become pages here.
//! - `views`: the maud templates, pure functions of plain data.
//! - `request_id`: the ID each request is logged and answered with.
//! - `input`: query strings, the author and the cookie, checked and decoded.
//! - `assets`: the embedded files under /static/.
//! - `clock`: the time of day the pages show, in the zone TZ names.
//! - `error`: `AppError` and the status each error gets.
//! - `fold`: what an author or a search becomes so that case and accents do not count.
//! - `logging`: the log line's timestamp and fields, made cheap enough to write per request;
//!   `cause_chain`, an error and its causes on one line.
//! - `db`: `Db`, one arm per backend, with one method per query; `db/sqlite.rs` and
//!   `db/postgres/` (its queries in `mod.rs`, the pool in `pool.rs`, TLS in `tls.rs`) hold each
//!   backend's SQL and set-up, and `db/outage.rs` logs when the database goes and comes back.
//! - `pooling`: `penny pooling`, the lecture's lesson on Penny's own search: a new connection
//!   per call, one shared connection, Penny's pool, and the pool from concurrent tasks, timed
//!   (`mod.rs`), printed as a table (`table.rs`) and drawn as a chart (`chart.rs`).
//! - `progress`: the progress bar of a command that runs a while.

pub mod assets;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod fold;
pub mod input;
pub mod logging;
pub mod pooling;
pub mod progress;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod views;

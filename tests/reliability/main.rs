//! Penny under load and under faults, with figures: PostgreSQL stopped and started again under
//! load, a credential rotation, SIGTERM under load, slowloris sockets, a pool held up by a lock,
//! the limit on requests in flight, and the SQLite file broken under a running server. Each test
//! prints what it measured: `cargo test --test reliability -- --nocapture` shows the figures.

#[path = "../common/mod.rs"]
mod common;

mod broken_sqlite;
mod credential_rotation;
mod helpers;
mod in_flight_limit;
mod pool_lock;
mod postgres_outage;
mod shutdown;
mod slowloris;

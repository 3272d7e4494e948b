//! The table `penny pooling` prints: Penny's rows beside the lecture's, with what each teaches.

use super::{Cut, LECTURE, LECTURE_CALLS, Report, Way, human_seconds};
use crate::views::Thousands;

/// The table in the lecture's shape, then a note on each row cut short or failing, then what
/// each row teaches. Plain text, for a terminal or a slide.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let books = match report.expected {
        1 => "1 book".to_string(),
        n => format!("{n} books"),
    };
    out.push_str(&wrap(
        &format!(
            "The first page of Penny's search for {:?} ({books}), on {}; Penny's pool holds up \
             to {} connections.",
            report.author, report.place, report.pool_size
        ),
        "",
    ));
    if report.pgbouncer {
        out.push_str(&wrap(
            "Through PgBouncer in transaction mode (pgbouncer=true): a new connection is one to \
             PgBouncer, which lends each query one of its own server connections, and no \
             statement is prepared.",
            "",
        ));
    }
    out.push('\n');

    let calls = report.calls;
    let baseline = report.baseline(calls);
    let lecture_baseline = LECTURE[0].1;
    let mut rows: Vec<[String; 8]> = vec![[
        "Way".into(),
        "Calls made".into(),
        "Time".into(),
        "Per call".into(),
        "Speed-up".into(),
        "Time".into(),
        "Speed-up".into(),
        "The lecture's row".into(),
    ]];
    for (index, row) in report.rows.iter().enumerate() {
        let mut cells: [String; 8] = Default::default();
        cells[0] = row.way.name();
        match &row.measured {
            Some(measured) if measured.calls > 0 => {
                cells[1] = if measured.calls == calls {
                    Thousands(calls).to_string()
                } else {
                    format!(
                        "{} (×{})",
                        Thousands(measured.calls),
                        factor(calls as f64 / measured.calls as f64)
                    )
                };
                let seconds = measured.seconds_for(calls).unwrap_or_default();
                cells[2] = human_seconds(seconds);
                cells[3] = human_seconds(measured.per_call().unwrap_or_default().as_secs_f64());
                cells[4] = baseline.map_or("—".into(), |base| speed_up(base / seconds));
            }
            Some(_) => cells[1] = "none".into(),
            None => cells[1] = "not run".into(),
        }
        // The lecture's rows beside the ones that teach the same; its two pools beside Penny's.
        let lecture: &[(&str, f64)] = match index {
            0 => &LECTURE[0..1],
            1 => &LECTURE[1..2],
            2 => &LECTURE[2..4],
            _ => &[],
        };
        if lecture.is_empty() {
            cells[5] = "—".into();
            cells[7] = "(the lecture has no such row)".into();
            rows.push(cells.clone());
        }
        for (line, (what, seconds)) in lecture.iter().enumerate() {
            let mut cells = if line == 0 {
                cells.clone()
            } else {
                Default::default()
            };
            cells[5] = format!("{seconds:.1} s");
            cells[6] = speed_up(lecture_baseline / seconds);
            cells[7] = what.to_string();
            rows.push(cells);
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let gap = 2;
    let start = |column: usize| widths[..column].iter().map(|w| w + gap).sum::<usize>();
    let penny = format!("Penny (Rust), for {} calls", Thousands(calls));
    let lecture = format!("The lecture (Python), {} calls", Thousands(LECTURE_CALLS));
    let mut groups = " ".repeat(start(1));
    groups.push_str(&penny);
    let pad = start(5).saturating_sub(groups.chars().count()).max(gap);
    groups.push_str(&" ".repeat(pad));
    groups.push_str(&lecture);
    out.push_str(groups.trim_end());
    out.push('\n');
    for row in &rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            line.push_str(cell);
            let width = widths[column] + gap;
            line.push_str(&" ".repeat(width.saturating_sub(cell.chars().count())));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }

    let notes = notes(report);
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            out.push_str(&wrap(&note, "- "));
        }
    }
    out.push_str("\nWhat each row teaches:\n");
    for row in &report.rows {
        out.push_str(&wrap(
            &format!("{}: {}", row.way.name(), lesson(row.way)),
            "- ",
        ));
    }
    out
}

/// A line for each row that made fewer calls than it stands for, or had failures.
fn notes(report: &Report) -> Vec<String> {
    let calls = report.calls;
    let mut notes = Vec::new();
    for row in &report.rows {
        let name = row.way.name();
        let Some(measured) = &row.measured else {
            notes.push(format!("{name}: not run (stopped by Ctrl-C)."));
            continue;
        };
        let made = Thousands(measured.calls);
        let scaled = if measured.calls > 0 && measured.calls < calls {
            format!(
                "; its time is scaled ×{} to {} calls",
                factor(calls as f64 / measured.calls as f64),
                Thousands(calls)
            )
        } else {
            String::new()
        };
        match measured.cut {
            Some(Cut::Budget) => notes.push(format!(
                "{name}: cut short at its share of the time budget (--budget), after {made} \
                 of {} calls{scaled}.",
                Thousands(row.planned)
            )),
            Some(Cut::Interrupted) => notes.push(format!(
                "{name}: stopped by Ctrl-C after {made} of {} calls{scaled}.",
                Thousands(row.planned)
            )),
            None if measured.calls < calls => notes.push(format!(
                "{name}: {made} calls made (a new connection costs the server a process; a few \
                 hundred tell its price){scaled}."
            )),
            None => {}
        }
        if measured.failed > 0 {
            notes.push(format!(
                "{name}: {} of {made} calls failed; the first: {}",
                Thousands(measured.failed),
                measured.first_error.as_deref().unwrap_or("(no message)")
            ));
        }
    }
    notes
}

/// What a row shows: why it is as fast or as slow as it is, and what it risks.
fn lesson(way: Way) -> &'static str {
    match way {
        Way::NewConnection => {
            "every call pays for a TCP connection, TLS, a password exchange (SCRAM) and a new \
             server process, each costlier than the query itself; on a hosted database, each \
             network round trip adds to it. The slowest row, in Rust as in Python."
        }
        Way::SharedConnection => {
            "nothing is opened or waited for, so this is the fastest way one call at a time. In \
             Python it is a race: threads sharing one connection mix up each other's queries \
             and cursors. Rust's types rule that race out (tokio-postgres's Client is Sync, and \
             queries sent at once are pipelined on the connection, each answer going to its \
             caller), but not the rest: one connection is one server process, one point of \
             failure, with no transaction of one's own (one user's BEGIN is everyone's), and a \
             lost connection fails every user until something reconnects it."
        }
        Way::Pool => {
            "almost the shared connection's speed: the pool hands back the same warm \
             connection, its statement prepared, for a few microseconds of bookkeeping. Each \
             caller gets a connection (or a place on one) of its own, a lost one is replaced by \
             the pool itself, and it never opens more than PENNY_POOL_SIZE."
        }
        Way::PoolTasks(_) => {
            "calls at once, as a busy Penny's requests come: the pool opens connections as they \
             are needed, up to its size, and spreads the calls over them, so that several server \
             processes work at once and the time for all calls falls below one connection's, \
             until the server's cores are all busy."
        }
    }
}

fn speed_up(ratio: f64) -> String {
    if ratio >= 9.95 {
        format!("{ratio:.0}×")
    } else {
        format!("{ratio:.1}×")
    }
}

/// A scale factor: 20, 3.2.
fn factor(value: f64) -> String {
    if (value - value.round()).abs() < 0.05 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// `text` wrapped at 96 columns, the first line after `bullet`, the others indented under it.
fn wrap(text: &str, bullet: &str) -> String {
    const WIDTH: usize = 96;
    let indent = " ".repeat(bullet.chars().count());
    let mut out = String::from(bullet);
    let mut column = bullet.chars().count();
    let mut first = true;
    for word in text.split_whitespace() {
        let length = word.chars().count();
        if !first && column + 1 + length > WIDTH {
            out.push('\n');
            out.push_str(&indent);
            column = indent.len();
        } else if !first {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += length;
        first = false;
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Measurement, RowResult};
    use super::*;
    use std::time::Duration;

    fn report() -> Report {
        let row = |way, calls, millis, cut| RowResult {
            way,
            planned: if way == Way::NewConnection {
                500
            } else {
                10_000
            },
            measured: Some(Measurement {
                calls,
                elapsed: Duration::from_millis(millis),
                cut,
                ..Measurement::default()
            }),
        };
        Report {
            author: "ker".into(),
            expected: 2,
            calls: 10_000,
            place: "PostgreSQL database penny on localhost:5432 as me".into(),
            pgbouncer: false,
            pool_size: 10,
            rows: vec![
                row(Way::NewConnection, 500, 5_000, None),
                row(Way::SharedConnection, 10_000, 1_000, None),
                row(Way::Pool, 5_000, 1_000, Some(Cut::Budget)),
                RowResult {
                    way: Way::PoolTasks(16),
                    planned: 10_000,
                    measured: None,
                },
            ],
        }
    }

    #[test]
    fn the_table_scales_a_short_row_and_compares_with_the_first() {
        let table = table(&report());
        let line = |start: &str| {
            table
                .lines()
                .find(|line| line.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in {table}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("a new connection"),
            "a new connection per call 500 (×20) 100 s 10.0 ms 1.0× 236.9 s 1.0× a new connection per call"
        );
        assert_eq!(
            line("one shared"),
            "one shared connection 10,000 1.00 s 100 µs 100× 3.2 s 74× one global connection"
        );
        assert!(line("Penny's pool, one").contains("5,000 (×2) 2.00 s 200 µs 50× 6.7 s 35×"));
        assert!(line("Penny's pool, 16").contains("not run"));
        let sqlalchemy = table
            .lines()
            .find(|line| line.contains("SQLAlchemy"))
            .unwrap();
        assert_eq!(
            sqlalchemy.split_whitespace().collect::<Vec<_>>().join(" "),
            "12.2 s 19× SQLAlchemy's pool"
        );
        assert!(
            table.contains("cut short at its share of the time budget"),
            "{table}"
        );
        assert!(table.contains("not run (stopped by Ctrl-C)"), "{table}");
    }

    #[test]
    fn a_row_never_started_means_the_run_was_interrupted() {
        let mut report = report();
        assert!(report.interrupted(), "the last row never ran");
        report.rows.pop();
        assert!(!report.interrupted(), "a budget cut is no interruption");
        report.rows[0].measured.as_mut().unwrap().cut = Some(Cut::Interrupted);
        assert!(report.interrupted());
    }

    #[test]
    fn a_long_note_is_wrapped_under_its_bullet() {
        let text = "word ".repeat(40);
        let wrapped = wrap(&text, "- ");
        assert!(wrapped.lines().all(|line| line.chars().count() <= 96));
        assert!(wrapped.lines().skip(1).all(|line| line.starts_with("  w")));
    }
}

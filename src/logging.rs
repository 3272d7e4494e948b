//! How log lines are written: tracing-subscriber's usual line, with two parts made cheaper,
//! since every request writes one. Under load the default formatter was a sixth of the work of
//! a search: it worked out the date for every line, and styled every field name even with
//! colours off.

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::time::FormatTime;

/// UTC time as RFC 3339 with microseconds, like tracing-subscriber's own timer. The date and
/// time of day are formatted once a second per thread; each line adds only the microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timestamp;

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        thread_local! {
            static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        SECOND.with_borrow_mut(|(second, text)| {
            if *second != now.as_secs() {
                *second = now.as_secs();
                *text = chrono::DateTime::from_timestamp(now.as_secs() as i64, 0)
                    .unwrap_or_default()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string();
            }
            write!(w, "{text}.{:06}Z", now.subsec_micros())
        })
    }
}

/// Fields as `name=value`, separated by spaces, the message first and bare. Values are written
/// with their Debug form, as tracing-subscriber does: text is quoted and its control characters
/// escaped, so no value can forge a line or a terminal sequence.
pub fn fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    format::debug_fn(
        |w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            if field.name() == "message" {
                write!(w, "{value:?}")
            } else {
                write!(w, "{field}={value:?}")
            }
        },
    )
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(record: impl FnOnce()) -> String {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(fields())
            .with_timer(Timestamp)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, record);
        String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_has_the_time_the_level_the_message_and_the_fields() {
        let text = line(|| tracing::info!(path = %"/x", status = 200u16, "request"));
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert!(time.ends_with('Z') && time.len() == 27, "{time}");
        assert!(
            rest.trim_start().ends_with("request path=/x status=200\n"),
            "{rest}"
        );
        assert!(rest.contains("INFO"), "{rest}");
    }

    #[test]
    fn text_values_cannot_break_the_line_or_reach_the_terminal() {
        let text = line(|| tracing::warn!(error = "a\nb\u{1b}[31m", "failed"));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(r#"error="a\nb\u{1b}[31m""#), "{text}");
    }
}

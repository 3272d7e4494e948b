//! How log lines are written: tracing-subscriber's usual line, with two parts made cheaper,
//! since every request writes one. Under load the default formatter was a sixth of the work of
//! a search: it worked out the date for every line, and styled every field name even with
//! colours off. The lines go to stdout from a thread of their own, and none is lost unsaid.
//! `cause_chain` puts an error and its causes on one line.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Level, Metadata};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::SubscriberBuilder;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::writer::MakeWriter;

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
                *text = jiff::Timestamp::from_second(now.as_secs() as i64)
                    .unwrap_or_default()
                    .strftime("%Y-%m-%dT%H:%M:%S")
                    .to_string();
            }
            write!(w, "{text}.{:06}Z", now.subsec_micros())
        })
    }
}

/// Fields as `name=value`, separated by spaces, the message first and bare. Values are written
/// with their Debug form, as tracing-subscriber does: text is quoted and its control characters
/// escaped, so no value can forge a line or a terminal sequence. Written straight into the line,
/// one field at a time: every request logs a line, and tracing-subscriber's own field formatter
/// costs several times this.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut line = FieldLine {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut line);
        line.result
    }
}

/// The fields of one line as they are written, and the first write error, if any.
struct FieldLine<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl FieldLine<'_> {
    /// Writes the separator and `name=` (nothing for the message), then the value.
    fn write(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let writer = &mut self.writer;
        let mut name = || {
            if !std::mem::take(&mut self.first) {
                writer.write_char(' ')?;
            }
            if field.name() != "message" {
                writer.write_str(field.name())?;
                writer.write_char('=')?;
            }
            Ok(())
        };
        self.result = name().and_then(|()| value(writer));
    }
}

impl Visit for FieldLine<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, |writer| write!(writer, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.write(field, |writer| write!(writer, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, |writer| write!(writer, "{value:?}"));
    }
}

/// The log line's format: Penny's subscriber and the writer's own notices both use it, so
/// that a notice reads like any other line.
pub fn format(ansi: bool) -> SubscriberBuilder<Fields, format::Format<format::Full, Timestamp>> {
    tracing_subscriber::fmt()
        .fmt_fields(Fields)
        .with_timer(Timestamp)
        .with_ansi(ansi)
}

/// Lines are gathered up to this many bytes, or until none is waiting, then written at once.
const BATCH_BYTES: usize = 64 * 1024;

/// How often the writer thread writes what has queued up (and the count of lines dropped since
/// its last write, if any): a line reaches stdout at most this much later.
const POLL: Duration = Duration::from_millis(5);

/// How long exit waits for the queued lines to be written: a stalled stdout cannot hold it up.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(1);

enum Message {
    Line(Vec<u8>),
    /// Write everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// Where log lines go: a `MakeWriter` that hands each line to a thread of its own, which
/// writes whatever has queued up in one system call. No request waits on stdout: when the
/// queue is full (stdout is not being read) an INFO, WARN or DEBUG line is dropped and counted,
/// and the count is logged, in a WARN line of its own, ahead of the next lines written. An ERROR
/// line is never dropped: the thread that logs it waits for room. Cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Writes the lines still queued when dropped, waiting for them at most `FLUSH_ON_EXIT`.
pub struct FlushOnExit {
    queue: SyncSender<Message>,
}

/// Starts the thread that writes log lines to `out` (stdout, in Penny), at most `queue_lines`
/// of them waiting, with `ansi` colours in its own notices as in the other lines.
pub fn writer(
    out: impl Write + Send + 'static,
    ansi: bool,
    queue_lines: usize,
) -> std::io::Result<(LogWriter, FlushOnExit)> {
    let (queue, lines) = std::sync::mpsc::sync_channel(queue_lines);
    let dropped = Arc::new(AtomicU64::new(0));
    let output = Output {
        out,
        batch: Vec::with_capacity(BATCH_BYTES),
        dropped: dropped.clone(),
        write_error: None,
        notices: Notices::new(ansi),
    };
    std::thread::Builder::new()
        .name("penny-log".into())
        .spawn(move || output.run(lines))?;
    Ok((
        LogWriter {
            queue: queue.clone(),
            dropped,
        },
        FlushOnExit { queue },
    ))
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine {
            line: Vec::new(),
            to: self,
            must_arrive: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LogLine<'a> {
        LogLine {
            line: Vec::new(),
            to: self,
            must_arrive: *meta.level() == Level::ERROR,
        }
    }
}

/// One event's line, gathered as tracing-subscriber writes it and queued when dropped.
pub struct LogLine<'a> {
    line: Vec<u8>,
    to: &'a LogWriter,
    must_arrive: bool,
}

impl Write for LogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = Message::Line(std::mem::take(&mut self.line));
        let sent = if self.must_arrive {
            // Errors are rare (an outage is logged once), and the one thing a reader of the
            // log must not miss.
            self.to.queue.send(line).is_ok()
        } else {
            self.to.queue.try_send(line).is_ok()
        };
        if !sent {
            self.to.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        let deadline = Instant::now() + FLUSH_ON_EXIT;
        let (done, written) = std::sync::mpsc::sync_channel(1);
        let mut flush = Message::Flush(done);
        loop {
            match self.queue.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    flush = again;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The writer thread's side: the output, the batch being gathered, and what was lost.
struct Output<W> {
    out: W,
    batch: Vec<u8>,
    /// Lines the queue had no room for, and lines a failed write took with it.
    dropped: Arc<AtomicU64>,
    /// Why the last write failed, until the loss is reported.
    write_error: Option<std::io::Error>,
    notices: Notices,
}

impl<W: Write> Output<W> {
    fn run(mut self, lines: Receiver<Message>) {
        let mut idle = false;
        loop {
            // While lines come, the thread looks for them every POLL rather than waiting on
            // the queue: a line sent to a thread that waits wakes it, a system call and a
            // switch of threads per line, which made a busy Penny 40 % slower than one that
            // logs nothing. Once a look finds none (and no loss to report), it waits for the
            // next: a server with nothing to log (at RUST_LOG=warn, most of the time) would
            // otherwise wake it 200 times a second for nothing.
            let mut took = false;
            if idle && self.dropped.load(Ordering::Relaxed) == 0 {
                match lines.recv() {
                    Ok(message) => {
                        self.take(message);
                        took = true;
                    }
                    Err(_) => return,
                }
            } else {
                std::thread::sleep(POLL);
            }
            loop {
                match lines.try_recv() {
                    Ok(message) => {
                        self.take(message);
                        took = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.write_batch();
                        return;
                    }
                }
            }
            self.write_batch();
            idle = !took;
        }
    }

    fn take(&mut self, message: Message) {
        match message {
            Message::Line(line) => {
                self.batch.extend_from_slice(&line);
                if self.batch.len() >= BATCH_BYTES {
                    self.write_batch();
                }
            }
            Message::Flush(done) => {
                self.write_batch();
                let _ = done.send(());
            }
        }
    }

    /// Writes the batch, after a line that says how many lines were lost since the last write
    /// if any were. A write that fails loses its lines, and counts them; it never panics.
    fn write_batch(&mut self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let mut notice_len = 0;
        if dropped > 0 {
            let reason = match self.write_error.take() {
                Some(err) => format!("writing to stdout failed ({err})"),
                None => "stdout was not being read".to_string(),
            };
            let lines = if dropped == 1 {
                "log line was"
            } else {
                "log lines were"
            };
            let notice = self
                .notices
                .line(format_args!("{dropped} {lines} dropped: {reason}"));
            notice_len = notice.len();
            self.batch.splice(0..0, notice);
        }
        if self.batch.is_empty() {
            return;
        }
        let mut written = 0;
        while written < self.batch.len() {
            match self.out.write(&self.batch[written..]) {
                Ok(0) => {
                    self.write_error = Some(std::io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => written += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.write_error = Some(err);
                    break;
                }
            }
        }
        if written < self.batch.len() {
            let unwritten = &self.batch[written..];
            let mut lost = unwritten.iter().filter(|&&byte| byte == b'\n').count() as u64;
            if written < notice_len {
                // The notice went with them: its count is still to be reported, and the notice
                // itself is no log line.
                lost += dropped - 1;
            }
            self.dropped.fetch_add(lost, Ordering::Relaxed);
        } else {
            // Stdout keeps nothing back from a write of whole lines: this is for other outputs.
            let _ = self.out.flush();
        }
        self.batch.clear();
    }
}

/// The writer thread's own lines (how many lines were dropped), formatted by a subscriber of
/// their own in the format of every other line.
struct Notices {
    dispatch: tracing::Dispatch,
    text: Arc<Mutex<Vec<u8>>>,
}

impl Notices {
    fn new(ansi: bool) -> Notices {
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = text.clone();
        let subscriber = format(ansi)
            .with_writer(move || SharedBuffer(sink.clone()))
            .finish();
        Notices {
            dispatch: tracing::Dispatch::new(subscriber),
            text,
        }
    }

    /// A WARN line saying `message`.
    fn line(&self, message: fmt::Arguments<'_>) -> Vec<u8> {
        tracing::dispatcher::with_default(&self.dispatch, || tracing::warn!("{message}"));
        std::mem::take(&mut *self.text.lock().unwrap_or_else(|err| err.into_inner()))
    }
}

struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|err| err.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `err` and its sources on one line, for the log.
pub fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(record: impl FnOnce()) -> String {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = format(false)
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
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
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
    /// An output that takes nothing until it is opened, as stdout does when nobody reads it,
    /// and says when a write is waiting.
    #[derive(Clone, Default)]
    struct Stalled(Arc<(Mutex<StallState>, std::sync::Condvar)>);

    #[derive(Default)]
    struct StallState {
        waiting: bool,
        open: bool,
        taken: Vec<u8>,
    }

    impl Stalled {
        fn wait_for_a_write(&self) {
            let (state, changed) = &*self.0;
            drop(
                changed
                    .wait_while(state.lock().unwrap(), |state| !state.waiting)
                    .unwrap(),
            );
        }

        fn open(&self) {
            let (state, changed) = &*self.0;
            state.lock().unwrap().open = true;
            changed.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.0.0.lock().unwrap().taken.clone()).unwrap()
        }
    }

    impl std::io::Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (state, changed) = &*self.0;
            let mut state = state.lock().unwrap();
            state.waiting = true;
            changed.notify_all();
            let mut state = changed.wait_while(state, |state| !state.open).unwrap();
            state.taken.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn count(text: &str, needle: &str) -> usize {
        text.lines().filter(|line| line.contains(needle)).count()
    }

    /// The total of "N log lines were dropped" notices in `text`.
    fn reported_dropped(text: &str) -> u64 {
        text.lines()
            .filter(|line| line.contains(" dropped: "))
            .filter_map(|line| line.split_once(" log line"))
            .map(|(start, _)| start.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    #[test]
    fn a_stalled_output_drops_info_lines_counted_and_keeps_every_error_line() {
        let out = Stalled::default();
        let (log_writer, flush_on_exit) = writer(out.clone(), false, 16).unwrap();
        let dispatch = tracing::Dispatch::new(format(false).with_writer(log_writer).finish());
        tracing::dispatcher::with_default(&dispatch, || tracing::info!(n = 0, "request"));
        out.wait_for_a_write();
        // The writer thread is stuck on its first write; the queue holds 16 lines.
        tracing::dispatcher::with_default(&dispatch, || {
            for n in 1..=100 {
                tracing::info!(n, "request");
            }
        });
        let errors = std::thread::spawn({
            let dispatch = dispatch.clone();
            move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for n in 0..5 {
                        tracing::error!(n, "failed");
                    }
                })
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        out.open();
        errors.join().unwrap();
        drop(flush_on_exit);

        let text = out.text();
        assert_eq!(count(&text, "ERROR"), 5, "{text}");
        let notices = count(&text, "log lines were dropped: stdout was not being read");
        assert!(notices >= 1, "{text}");
        assert_eq!(
            count(&text, " request n=") as u64 + reported_dropped(&text),
            101,
            "{text}"
        );
        let notice = text.lines().find(|line| line.contains("dropped")).unwrap();
        let (time, rest) = notice.split_once(' ').unwrap();
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
        assert!(
            rest.starts_with(" WARN penny::logging: ")
                && rest.ends_with(" stdout was not being read"),
            "{notice}"
        );
    }

    /// An output that fails its first `failures` writes, then takes everything.
    #[derive(Clone)]
    struct Failing(Arc<Mutex<(usize, Vec<u8>)>>);

    impl std::io::Write for Failing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut state = self.0.lock().unwrap();
            if state.0 > 0 {
                state.0 -= 1;
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            state.1.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_a_failed_write_lost_are_counted_and_a_dead_output_never_panics() {
        let out = Failing(Arc::new(Mutex::new((1, Vec::new()))));
        let (log_writer, flush_on_exit) = writer(out.clone(), false, 16).unwrap();
        let dispatch = tracing::Dispatch::new(format(false).with_writer(log_writer).finish());
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("lost"));
        while out.0.lock().unwrap().0 > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("kept"));
        drop(flush_on_exit);
        let text = String::from_utf8(out.0.lock().unwrap().1.clone()).unwrap();
        assert!(!text.contains("lost"), "{text}");
        assert!(text.contains("kept"), "{text}");
        assert!(
            text.contains("1 log line was dropped: writing to stdout failed (broken pipe)"),
            "{text}"
        );

        let dead = Failing(Arc::new(Mutex::new((usize::MAX, Vec::new()))));
        let (log_writer, flush_on_exit) = writer(dead, false, 16).unwrap();
        let dispatch = tracing::Dispatch::new(format(false).with_writer(log_writer).finish());
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..100 {
                tracing::info!("nobody reads this");
            }
        });
        drop(flush_on_exit);
    }
}

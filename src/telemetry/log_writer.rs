//! The log's writer: request threads append finished lines to a shared buffer,
//! and one thread of its own writes that buffer out in batches — when it holds
//! [`FLUSH_BYTES`], or [`FLUSH_INTERVAL`] after the first waiting line.
//!
//! A request never waits for a write to stderr (a journal, a pipe, a terminal),
//! and a busy daemon does not wake the writer once per line: at a few thousand
//! requests a second, one write and one wake-up carry hundreds of lines. It is
//! never lossy: when [`MAX_QUEUED_BYTES`] are waiting, the next line waits for
//! room — a stalled log slows requests down rather than losing their lines or
//! growing memory without bound. At the stop, the last lines get
//! [`STOP_WAIT`] to be written: an output that takes none does not keep the
//! process from exiting.
//!
//! It does not format lines (`tracing-subscriber` and [`super::access_log`] do,
//! one `write` per line, so lines never interleave) and does not rotate files (the journal or the
//! container runtime does).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// A batch this large is written without waiting for the interval.
pub const FLUSH_BYTES: usize = 32 * 1024;
/// The longest a line waits in the buffer on a quiet daemon.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Lines beyond this many waiting bytes wait for the writer (about 10,000
/// access lines).
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// The shared buffer and the two ways of waiting on it.
struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for a full batch or the interval.
    batch_ready: Condvar,
    /// A line that found the buffer full waits here for the writer.
    room: Condvar,
    /// The guard waits here for the writer thread's last batch.
    stopped: Condvar,
    max_queued: usize,
}

struct State {
    /// Finished lines not yet handed to the output.
    lines: Vec<u8>,
    /// Set when the [`LogWriterGuard`] is dropped: write what is left and stop.
    closing: bool,
    /// Set by the writer thread when it has written its last batch.
    finished: bool,
}

/// Where `tracing-subscriber` writes: a cheap handle on the shared buffer.
#[derive(Clone)]
pub struct BufferedLog {
    shared: Arc<Shared>,
}

/// Keeps the writer thread running; dropping it writes what is queued and
/// joins the thread.
#[must_use = "dropping it stops the log writer"]
pub struct LogWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A buffer in front of `output`, with its writer thread started.
pub fn spawn<W: Write + Send + 'static>(
    output: W,
) -> std::io::Result<(BufferedLog, LogWriterGuard)> {
    spawn_bounded(output, MAX_QUEUED_BYTES)
}

fn spawn_bounded<W: Write + Send + 'static>(
    mut output: W,
    max_queued: usize,
) -> std::io::Result<(BufferedLog, LogWriterGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            lines: Vec::with_capacity(FLUSH_BYTES * 2),
            closing: false,
            finished: false,
        }),
        batch_ready: Condvar::new(),
        room: Condvar::new(),
        stopped: Condvar::new(),
        max_queued,
    });
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new()
        .name("wssgate-log".into())
        .spawn(move || write_batches(&for_thread, &mut output))?;
    Ok((
        BufferedLog {
            shared: shared.clone(),
        },
        LogWriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

impl Shared {
    /// A panic while the lock was held leaves bytes, not broken invariants:
    /// logging goes on.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread: take the waiting lines in one swap, write them unlocked.
fn write_batches(shared: &Shared, output: &mut dyn Write) {
    let mut batch = Vec::with_capacity(FLUSH_BYTES * 2);
    loop {
        let closing = {
            let mut state = shared.lock();
            while state.lines.is_empty() && !state.closing {
                state = shared
                    .batch_ready
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            // Lines are waiting: give the batch until the interval to fill.
            if state.lines.len() < FLUSH_BYTES && !state.closing {
                state = shared
                    .batch_ready
                    .wait_timeout_while(state, FLUSH_INTERVAL, |s| {
                        s.lines.len() < FLUSH_BYTES && !s.closing
                    })
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            std::mem::swap(&mut state.lines, &mut batch);
            state.closing
        };
        shared.room.notify_all();
        // A log that cannot be written has nowhere to report it.
        let _ = output.write_all(&batch).and_then(|()| output.flush());
        batch.clear();
        // Keep the buffers at their working size after a burst.
        batch.shrink_to(FLUSH_BYTES * 2);
        if closing {
            let mut state = shared.lock();
            if state.lines.is_empty() {
                state.finished = true;
                drop(state);
                shared.stopped.notify_all();
                return;
            }
        }
    }
}

impl BufferedLog {
    /// Queue one whole line (waiting for room when the queue is full).
    pub fn append(&self, line: &[u8]) {
        let shared = &self.shared;
        let mut state = shared.lock();
        // A line longer than the whole queue still goes, once the queue is empty.
        // Once the daemon is stopping, nothing waits: the writer may be gone.
        while !state.closing
            && !state.lines.is_empty()
            && state.lines.len() + line.len() > shared.max_queued
        {
            state = shared.room.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let was_empty = state.lines.is_empty();
        state.lines.extend_from_slice(line);
        let full = state.lines.len() >= FLUSH_BYTES;
        drop(state);
        // Woken for the first line (to start the interval) and for a full batch;
        // the lines between need nobody.
        if was_empty || full {
            shared.batch_ready.notify_one();
        }
    }
}

impl Write for BufferedLog {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedLog {
    type Writer = BufferedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// How long the guard waits for the last lines to be written: an output that
/// does not take them (a stalled journal, a pipe nobody reads) must not keep
/// the daemon from exiting.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.batch_ready.notify_one();
        self.shared.room.notify_all();
        let (state, waited) = self
            .shared
            .stopped
            .wait_timeout_while(state, STOP_WAIT, |s| !s.finished)
            .unwrap_or_else(|p| p.into_inner());
        let finished = state.finished;
        drop(state);
        match self.thread.take() {
            Some(thread) if finished && !waited.timed_out() => {
                let _ = thread.join();
            }
            // Left to the process's exit.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An output that records what reached it, and can be stalled.
    #[derive(Clone, Default)]
    struct Recorder {
        written: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        stalled: Arc<AtomicBool>,
    }

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            while self.stalled.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.written.lock().unwrap().extend_from_slice(bytes);
            *self.writes.lock().unwrap() += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_once_the_guard_is_dropped() {
        let out = Recorder::default();
        let (log, guard) = spawn(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        log.write_all(format!("thread={t} line={i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let written = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 8_000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread={t} ")))
                .collect();
            let expected: Vec<String> =
                (0..2_000).map(|i| format!("thread={t} line={i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines, whole and in order");
        }
        // Batched: far fewer writes than lines.
        assert!(*out.writes.lock().unwrap() < 8_000 / 10);
    }

    #[test]
    fn a_stalled_output_holds_writers_at_the_bound_and_loses_nothing() {
        let out = Recorder::default();
        out.stalled.store(true, Ordering::SeqCst);
        let (log, guard) = spawn_bounded(out.clone(), 1_000).unwrap();
        let line = [b'x'; 99];
        let sent = Arc::new(Mutex::new(0usize));
        let writer = {
            let (mut log, sent) = (log.clone(), sent.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    log.write_all(&line).unwrap();
                    log.write_all(b"\n").unwrap();
                    *sent.lock().unwrap() += 1;
                }
            })
        };
        // The writer thread took at most one batch before the output stalled;
        // everything else waits in the bounded buffer, and the sender waits too.
        std::thread::sleep(Duration::from_millis(300));
        let accepted = *sent.lock().unwrap();
        let queued = log.shared.lock().lines.len();
        assert!(queued <= 1_000, "queued {queued} bytes past the bound");
        assert!(
            accepted < 100,
            "all {accepted} lines accepted while the output stalled"
        );
        out.stalled.store(false, Ordering::SeqCst);
        writer.join().unwrap();
        drop(guard);
        assert_eq!(out.written.lock().unwrap().len(), 100 * 100);
    }

    #[test]
    fn a_stalled_output_does_not_keep_the_guard_past_its_wait() {
        let out = Recorder::default();
        out.stalled.store(true, Ordering::SeqCst);
        let (mut log, guard) = spawn_bounded(out.clone(), 1_000).unwrap();
        log.write_all(b"a line the output never takes\n").unwrap();
        // The writer takes the line and blocks in the stalled output.
        std::thread::sleep(FLUSH_INTERVAL * 3);
        let dropping = std::thread::spawn(move || drop(guard));
        let deadline = std::time::Instant::now() + STOP_WAIT * 10;
        while !dropping.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the guard waited for a stalled output"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Lines after the stop neither wait nor block on the full buffer.
        for _ in 0..100 {
            log.write_all(&[b'y'; 99]).unwrap();
        }
        out.stalled.store(false, Ordering::SeqCst);
    }

    #[test]
    fn a_quiet_daemons_line_is_written_without_more_lines_coming() {
        let out = Recorder::default();
        let (mut log, _guard) = spawn(out.clone()).unwrap();
        log.write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.written.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*out.written.lock().unwrap(), b"one line\n");
    }
}

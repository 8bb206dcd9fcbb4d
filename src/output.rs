//! What a program shows a person besides log lines: its data on a buffered
//! stdout that turns a closed pipe into a recognisable error (`tool | head`
//! is not a failure), and progress bars on stderr, only on a terminal.

use std::io::{self, IsTerminal};

use indicatif::{ProgressBar, ProgressStyle};

/// Stdout was closed by the reader (`tool | head`): not a failure.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Buffered standard output for a program's data. A write to a closed pipe
/// fails with `StdoutClosed` inside, which `run` treats as success, while a
/// broken pipe on a socket stays an error.
pub struct Stdout(io::BufWriter<io::Stdout>);

/// The program's data output; flush it (or drop it) when done.
pub fn stdout() -> Stdout {
    Stdout(io::BufWriter::with_capacity(64 * 1024, io::stdout()))
}

/// A broken pipe on stdout, marked as `StdoutClosed`; other errors as they are.
pub(crate) fn mark_closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark_closed)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark_closed)
    }
}

/// True when stderr is a terminal, i.e. progress bars should be drawn.
pub fn progress_enabled() -> bool {
    io::stderr().is_terminal()
}

/// A byte-counting progress bar on stderr, hidden unless stderr is a terminal.
pub fn byte_bar(len: u64, label: &str) -> ProgressBar {
    if !progress_enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // The template is a constant known to be valid.
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}

/// A byte counter with the rate, for a transfer of unknown length (a
/// GET_FILE body runs until the owner closes), on stderr when it is a
/// terminal; hidden otherwise.
pub(crate) fn byte_counter(label: &str) -> ProgressBar {
    if !progress_enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    // The template is a constant known to be valid.
    let style = ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}

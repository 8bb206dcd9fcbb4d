//! Daemon logging: event lines on stdout and diagnostics on stderr as
//! `tool: message`. Neither ever fails or panics when its stream is closed
//! (`println!` would), so a daemon whose log goes nowhere keeps serving.
//! A [`Throttle`] keeps lines that come in bursts to a few a second.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

static TOOL: OnceLock<String> = OnceLock::new();

/// Names the running program for diagnostics; `cli::run` calls it.
pub(crate) fn set_tool(name: &str) {
    let _ = TOOL.set(name.to_string());
}

/// The running program's name (`peerkit` until `set_tool`).
pub(crate) fn tool() -> &'static str {
    TOOL.get().map(String::as_str).unwrap_or("peerkit")
}

/// How much a program says: `-q` and `-v` mean the same in every program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Only the data asked for, warnings and errors.
    Quiet,
    /// Also what happens (joins, transfers, membership).
    Normal,
    /// Also one line per step (a piece, a request, a message).
    Verbose,
}

/// Writes one event line to stdout, ignoring errors. Use `event!`.
pub(crate) fn write_event(args: fmt::Arguments<'_>) {
    // In unit tests through the test harness's capture, so a passing test
    // prints nothing.
    if cfg!(test) {
        println!("{args}");
    } else {
        let _ = writeln!(io::stdout().lock(), "{args}");
    }
}

/// Writes `tool: message` to stderr, ignoring errors. Use `diag!`.
pub(crate) fn write_diag(args: fmt::Arguments<'_>) {
    if cfg!(test) {
        eprintln!("{}: {args}", tool());
    } else {
        let _ = writeln!(io::stderr().lock(), "{}: {args}", tool());
    }
}

/// One event line on stdout (`joined 127.0.0.1:4000`), never failing.
#[macro_export]
macro_rules! event {
    ($($arg:tt)*) => {
        $crate::log::write_event(format_args!($($arg)*))
    };
}

/// One diagnostic line on stderr, prefixed with the tool name, never failing.
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::log::write_diag(format_args!($($arg)*))
    };
}

/// Diagnostic lines a second that a [`Throttle`] lets through; the rest are
/// counted and summed up in the next line that gets through.
pub(crate) const LINES_PER_SEC: u32 = 5;

/// Diagnostics of one sort that may come in bursts (an attack: closed,
/// dropped or evicted connections): at most [`LINES_PER_SEC`] a second,
/// the rest counted into the next line as `(and N more like it)`. A
/// throttle built to let `all` lines through (`-v`) only prints.
#[derive(Debug)]
pub(crate) struct Throttle {
    all: bool,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// When the current one-second window began.
    since: Instant,
    /// Lines printed in it.
    used: u32,
    /// Lines held back since the last one printed.
    held: u64,
}

impl Throttle {
    /// A throttle; with `all`, every line is printed.
    pub(crate) fn new(all: bool) -> Throttle {
        Throttle {
            all,
            state: Mutex::new(Window {
                since: Instant::now(),
                used: 0,
                held: 0,
            }),
        }
    }

    /// Prints the line `line` makes, unless this second's budget is spent
    /// (then it is only counted, and `line` is not called).
    pub(crate) fn diag(&self, line: impl FnOnce() -> String) {
        let held = {
            let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if now.duration_since(w.since) >= Duration::from_secs(1) {
                w.since = now;
                w.used = 0;
            }
            if !self.all && w.used >= LINES_PER_SEC {
                w.held += 1;
                return;
            }
            w.used += 1;
            std::mem::take(&mut w.held)
        };
        match held {
            0 => crate::diag!("{}", line()),
            n => crate::diag!("{} (and {n} more like it)", line()),
        }
    }

    /// Lines held back since the last one printed.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_of_lines_are_counted_not_printed() {
        let t = Throttle::new(false);
        for _ in 0..12 {
            t.diag(|| "test line from the throttle".into());
        }
        assert_eq!(t.held(), 12 - u64::from(LINES_PER_SEC));
        let all = Throttle::new(true);
        for _ in 0..12 {
            all.diag(|| "test line from the throttle".into());
        }
        assert_eq!(all.held(), 0);
    }
}

//! Daemon logging: event lines on stdout and diagnostics on stderr as
//! `tool: message`. Neither ever fails or panics when its stream is closed
//! (`println!` would), so a daemon whose log goes nowhere keeps serving.

use std::fmt;
use std::io::{self, Write};
use std::sync::OnceLock;

static TOOL: OnceLock<String> = OnceLock::new();

/// Names the running program for diagnostics; `cli::run` calls it.
pub fn set_tool(name: &str) {
    let _ = TOOL.set(name.to_string());
}

/// The running program's name (`peerkit` until `set_tool`).
pub fn tool() -> &'static str {
    TOOL.get().map(String::as_str).unwrap_or("peerkit")
}

/// Writes one event line to stdout, ignoring errors. Use `event!`.
pub fn write_event(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{args}");
}

/// Writes `tool: message` to stderr, ignoring errors. Use `diag!`.
pub fn write_diag(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{}: {args}", tool());
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

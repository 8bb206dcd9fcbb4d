//! Command lines for the shells (`kv-query`, `nap-peer`): from a terminal
//! with line editing and a history file (rustyline: arrows, Ctrl-R, Ctrl-A/E),
//! or plain lines from a pipe. Reading happens on a thread of its own, so
//! a Ctrl-C or SIGTERM ([`Shutdown`]) ends a wait for the next line at once
//! however the line was to come.

use std::io::{self, BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;

use crate::shutdown::{Shutdown, Subscription};

/// What the next read gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// One line, without its line ending.
    Text(String),
    /// Ctrl-C at the prompt, or a signal while waiting for input.
    Interrupted,
    /// The end of the input (Ctrl-D on an empty line, or a closed pipe).
    End,
}

/// Where the shells keep their history: `$XDG_DATA_HOME/peerkit`, else
/// `~/.local/share/peerkit`; `None` when neither can be found.
pub(crate) fn data_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("XDG_DATA_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| from("HOME").map(|h| h.join(".local").join("share")))
        .map(|d| d.join("peerkit"))
}

/// The history file of the shell `tool`.
pub(crate) fn history_file(tool: &str) -> Option<PathBuf> {
    data_dir().map(|d| d.join(format!("{tool}_history")))
}

/// A source of command lines.
pub struct Input {
    /// Asks the reader for one line, with this prompt.
    want: Option<Sender<String>>,
    lines: Receiver<Line>,
    /// The input has ended: the reader is gone (or going), ask it no more.
    ended: bool,
    terminal: bool,
    shutdown: Arc<Shutdown>,
    _interrupt: Subscription,
    /// The terminal's settings when the shell started, put back on drop in
    /// case the reader is stopped in the middle of an edited line.
    #[cfg(unix)]
    saved: Option<rustix::termios::Termios>,
}

impl Input {
    /// Lines from stdin: edited, with the history of `tool`, when stdin is
    /// a terminal; plain lines otherwise.
    pub fn stdin(tool: &str, shutdown: &Arc<Shutdown>) -> Input {
        if io::stdin().is_terminal() {
            Input::terminal(tool, shutdown)
        } else {
            Input::plain_stdin(shutdown)
        }
    }

    /// Plain lines from stdin, without a prompt.
    fn plain_stdin(shutdown: &Arc<Shutdown>) -> Input {
        Input::spawn(shutdown, false, |_prompt: &str| {
            plain_line(|buf| io::stdin().read_line(buf))
        })
    }

    /// Plain lines from `r`; the prompt is never shown.
    pub fn reader(r: impl BufRead + Send + 'static, shutdown: &Arc<Shutdown>) -> Input {
        let mut r = r;
        Input::spawn(shutdown, false, move |_prompt: &str| {
            plain_line(|buf| r.read_line(buf))
        })
    }

    fn terminal(tool: &str, shutdown: &Arc<Shutdown>) -> Input {
        use rustyline::error::ReadlineError;
        let config = rustyline::Config::builder()
            .max_history_size(1000)
            .and_then(|c| c.history_ignore_dups(true))
            .map(|c| c.history_ignore_space(true).build())
            .unwrap_or_default();
        let mut editor = match rustyline::DefaultEditor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                crate::diag!("line editing unavailable ({e}); reading plain lines");
                return Input::plain_stdin(shutdown);
            }
        };
        let history = history_file(tool).and_then(|path| {
            let dir = path.parent()?;
            match std::fs::create_dir_all(dir) {
                Ok(()) => Some(path),
                Err(e) => {
                    crate::diag!("history not kept: {}: {e}", dir.display());
                    None
                }
            }
        });
        if let Some(path) = &history
            && path.exists()
            && let Err(e) = editor.load_history(path)
        {
            crate::diag!("history not read: {}: {e}", path.display());
        }
        #[cfg(unix)]
        let saved = rustix::termios::tcgetattr(io::stdin()).ok();
        let mut warned = false;
        let mut input = Input::spawn(shutdown, true, move |prompt: &str| {
            match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(path) = &history
                            && let Err(e) = editor.append_history(path)
                            && !warned
                        {
                            crate::diag!("history not saved: {}: {e}", path.display());
                            warned = true;
                        }
                    }
                    Line::Text(line)
                }
                Err(ReadlineError::Interrupted) => Line::Interrupted,
                Err(ReadlineError::Eof) => Line::End,
                Err(e) => {
                    crate::diag!("reading the terminal: {e}");
                    Line::End
                }
            }
        });
        #[cfg(unix)]
        {
            input.saved = saved;
        }
        input
    }

    /// Starts the reader thread around `read` (called once per wanted line).
    fn spawn(
        shutdown: &Arc<Shutdown>,
        terminal: bool,
        mut read: impl FnMut(&str) -> Line + Send + 'static,
    ) -> Input {
        let (want, wanted) = channel::<String>();
        let (tx, lines) = channel();
        let stop = tx.clone();
        let interrupt = shutdown.subscribe(move || {
            let _ = stop.send(Line::Interrupted);
        });
        let spawned = thread::Builder::new().name("input".into()).spawn(move || {
            for prompt in wanted {
                let line = read(&prompt);
                let end = line == Line::End;
                // Nothing more to read, or no one left to read for.
                if tx.send(line).is_err() || end {
                    return;
                }
            }
        });
        let want = match spawned {
            Ok(_) => Some(want),
            Err(e) => {
                crate::diag!("starting the input reader: {e}");
                None
            }
        };
        Input {
            want,
            lines,
            ended: false,
            terminal,
            shutdown: shutdown.clone(),
            _interrupt: interrupt,
            #[cfg(unix)]
            saved: None,
        }
    }

    /// True when lines come from a terminal with line editing.
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// The next line; `prompt` is shown on a terminal. `Interrupted` has
    /// started shutdown.
    pub fn next(&mut self, prompt: &str) -> Line {
        if self.shutdown.is_triggered() {
            return Line::Interrupted;
        }
        let Some(want) = &self.want else {
            return Line::End;
        };
        if self.ended || want.send(prompt.to_string()).is_err() {
            return Line::End;
        }
        // The subscription holds a sender too, so a reader that is gone is
        // never seen as a disconnection: it said End before it went.
        let line = self.lines.recv().unwrap_or(Line::End);
        self.ended = line == Line::End;
        if line == Line::Interrupted {
            // Ctrl-C typed at the prompt means what SIGINT means: the
            // program is stopping, and a second Ctrl-C ends it at once.
            self.shutdown.trigger();
        }
        line
    }
}

/// One line read by `read_line`, without its line ending.
fn plain_line(read_line: impl FnOnce(&mut String) -> io::Result<usize>) -> Line {
    let mut line = String::new();
    match read_line(&mut line) {
        Ok(0) => Line::End,
        Ok(_) => Line::Text(line.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) => {
            crate::diag!("reading the input: {e}");
            Line::End
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_in_order_then_the_end() {
        let s = Shutdown::new();
        let mut input = Input::reader(io::Cursor::new(b"a\r\nb c\n\nlast".to_vec()), &s);
        assert!(!input.is_terminal());
        for want in ["a", "b c", "", "last"] {
            assert_eq!(input.next("> "), Line::Text(want.into()));
        }
        assert_eq!(input.next("> "), Line::End);
        assert_eq!(input.next("> "), Line::End);
    }

    #[test]
    fn a_signal_ends_a_wait_for_a_line_that_never_comes() {
        let s = Shutdown::new();
        let (_keep_open, r) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut input = Input::reader(io::BufReader::new(r), &s);
        // Whether the signal comes before or during the wait, it ends it.
        let s2 = s.clone();
        let t = thread::spawn(move || s2.trigger());
        assert_eq!(input.next("> "), Line::Interrupted);
        assert_eq!(input.next("> "), Line::Interrupted);
        t.join().unwrap();
    }
}

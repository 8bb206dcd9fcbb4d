//! The DHT programs' bodies, called by the thin binaries: argument
//! checks, the library call, and what gets printed (anyhow for context).
//! The only file of the dht system that uses `anyhow`.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{self, Level, Refused};
use crate::dht::client::{self, Dest, Fetched, GetOptions, Put, Step};
use crate::dht::proto::MAX_HEARTBEAT;
use crate::dht::{index, superd};
use crate::name::FileName;
use crate::net::{self, Timeouts};
use crate::server::Limits;
use crate::transfer::Overwrite;

/// `p2p-index`: serves the ring until Ctrl-C or SIGTERM.
pub fn index(listen: &str, limits: Limits, level: Level, http: Option<&str>) -> anyhow::Result<()> {
    index::run(listen, limits, level, http)?;
    Ok(())
}

/// `p2p-superd`'s settings, as given on the command line.
pub struct SuperdArgs {
    pub repo: PathBuf,
    pub index: String,
    pub listen: String,
    pub sync_interval_secs: f64,
    pub heartbeat_secs: f64,
    pub limits: Limits,
    pub level: Level,
    /// Serve a live view at this address (`--http`).
    pub http: Option<String>,
}

/// `p2p-superd`: runs a supernode until Ctrl-C or SIGTERM, then leaves.
pub fn superd(a: SuperdArgs) -> anyhow::Result<()> {
    let sync = a.sync_interval_secs;
    if !(sync.is_finite() && sync > 0.0 && sync < 1e6) {
        bail!("--sync-interval must be a positive number of seconds");
    }
    let max_beat = MAX_HEARTBEAT.as_secs_f64();
    let beat = a.heartbeat_secs;
    if !(beat.is_finite() && beat > 0.0 && beat <= max_beat) {
        bail!("--heartbeat must be a positive number of seconds, at most {max_beat}");
    }
    superd::run(superd::Options {
        repo: a.repo,
        index: a.index,
        listen: a.listen,
        sync_interval: Duration::from_secs_f64(sync),
        heartbeat: Duration::from_secs_f64(beat),
        limits: a.limits,
        level: a.level,
        http: a.http,
    })?;
    Ok(())
}

/// The supernode's address from the first operands, `HOST:PORT` or
/// `HOST PORT`, when `rest` more operands follow it; and those operands.
fn address(operands: &[String], rest: usize) -> anyhow::Result<(String, &[String])> {
    match operands.len() {
        n if n == rest + 1 => {
            let addr = &operands[0];
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok((addr.clone(), &operands[1..]))
                }
                _ => bail!("{addr:?} is not HOST:PORT (or give HOST and PORT apart)"),
            }
        }
        n if n == rest + 2 => {
            let port: u16 = operands[1]
                .parse()
                .map_err(|_| anyhow::anyhow!("{:?} is not a port number", operands[1]))?;
            Ok((net::host_port(&operands[0], port), &operands[2..]))
        }
        _ => bail!("expected the supernode as HOST:PORT or HOST PORT (see --help)"),
    }
}

/// `p2p-ls HOST:PORT` / `p2p-ls HOST PORT`: prints the names of one
/// supernode's repository, escaped (see `shell_escape`) unless `json`.
pub fn ls(operands: &[String], json: bool, timeouts: Timeouts, level: Level) -> anyhow::Result<()> {
    let (addr, _) = address(operands, 0)?;
    let names = client::list(&addr, &timeouts).with_context(|| format!("listing {addr}"))?;
    let mut out = cli::stdout();
    if json {
        let items: Vec<&str> = names.iter().map(FileName::as_str).collect();
        serde_json::to_writer(&mut out, &items)?;
        writeln!(out)?;
    } else {
        let terminal = std::io::stdout().is_terminal();
        for n in &names {
            writeln!(out, "{}", listed(n.as_str(), terminal))?;
        }
    }
    out.flush()?;
    if level == Level::Verbose {
        eprintln!("{addr}: {} names", names.len());
    }
    Ok(())
}

/// What `p2p-get` was asked to do besides the address and name.
pub struct GetArgs {
    /// `-o PATH` (`-` for stdout).
    pub output: Option<PathBuf>,
    /// `--force`: replace an existing file.
    pub force: bool,
    /// `--continue`: resume a partial download.
    pub resume: bool,
    /// `--keep-partial`: keep what arrived if the download fails.
    pub keep_partial: bool,
}

/// `p2p-get HOST:PORT NAME` / `p2p-get HOST PORT NAME`: downloads NAME to
/// the current folder, to PATH, or to stdout (`-o -`).
pub fn get(
    operands: &[String],
    args: GetArgs,
    timeouts: Timeouts,
    level: Level,
) -> anyhow::Result<()> {
    let (addr, rest) = address(operands, 1)?;
    let name = FileName::new(rest[0].as_str())?;
    let dest = match &args.output {
        Some(p) if p == Path::new("-") => Dest::Stdout,
        Some(p) if p.is_dir() => Dest::Path(p.join(name.as_str())),
        Some(p) => Dest::Path(p.clone()),
        None => Dest::Path(PathBuf::from(name.as_str())),
    };
    let keep = args.keep_partial || args.resume;
    if let Dest::Path(path) = &dest {
        clean_up_on_signal(client::partial_path(path), keep)?;
    }
    let opts = GetOptions {
        dest,
        overwrite: if args.force {
            Overwrite::Replace
        } else {
            Overwrite::Never
        },
        resume: args.resume,
        keep_partial: keep,
        timeouts,
    };
    let report = |step: Step<'_>| match step {
        Step::Asking(at) if level == Level::Verbose => eprintln!("asking {at} for {name}"),
        Step::Redirect { from, to } if level >= Level::Normal => {
            eprintln!("{name} not found at {from}, redirecting to {to}")
        }
        Step::Resuming { offset } if level >= Level::Normal => {
            eprintln!("resuming {name} after byte {offset}")
        }
        Step::Receiving { from, size } if level == Level::Verbose => {
            eprintln!("receiving {name} from {from}: {size} bytes")
        }
        Step::Verified(digest) if level == Level::Verbose => {
            eprintln!("{name}: BLAKE3 {digest} verified")
        }
        Step::KeptPartial(p) if level >= Level::Normal => eprintln!(
            "partial download kept in {}; resume it with --continue",
            p.display()
        ),
        _ => {}
    };
    let fetched = client::get(&addr, &name, &opts, report, |len| bar(level, len, &name))?;
    match fetched {
        Fetched::Got { .. } => Ok(()),
        Fetched::NotAvailable { .. } => {
            Err(Refused(format!("{name} is not available in the network")).into())
        }
        Fetched::Exists { path } => Err(Refused(format!(
            "{}: already exists (use --force to replace it)",
            path.display()
        ))
        .into()),
    }
}

/// On Ctrl-C or SIGTERM, removes the partial file (unless it is to be
/// kept) and exits 130: an interrupted download leaves nothing behind.
fn clean_up_on_signal(partial: PathBuf, keep: bool) -> anyhow::Result<()> {
    ctrlc::set_handler(move || {
        let tool = crate::log::tool();
        if keep && partial.exists() {
            eprintln!(
                "{tool}: interrupted; partial download kept in {} (resume it with --continue)",
                partial.display()
            );
        } else {
            // Best effort: it may not exist yet, or be renamed into place.
            let _ = std::fs::remove_file(&partial);
            eprintln!("{tool}: interrupted");
        }
        std::process::exit(130);
    })?;
    Ok(())
}

/// A progress bar for `len` bytes, none when quiet.
fn bar(level: Level, len: u64, name: &FileName) -> indicatif::ProgressBar {
    if level == Level::Quiet {
        indicatif::ProgressBar::hidden()
    } else {
        cli::byte_bar(len, name.as_str())
    }
}

/// `p2p-put HOST:PORT PATH` / `p2p-put HOST PORT PATH`: uploads a local
/// file under its own name.
pub fn put(operands: &[String], timeouts: Timeouts, level: Level) -> anyhow::Result<()> {
    let (addr, rest) = address(operands, 1)?;
    let path = Path::new(&rest[0]);
    let name = FileName::from_path(path).map_or_else(|_| rest[0].clone(), |n| n.to_string());
    let note = |line: &str| {
        if level == Level::Verbose {
            eprintln!("{line}");
        }
    };
    let put = client::put(&addr, path, &timeouts, note, |len| {
        if level == Level::Quiet {
            indicatif::ProgressBar::hidden()
        } else {
            cli::byte_bar(len, &name)
        }
    })?;
    match put {
        Put::Stored { size } => {
            if level == Level::Verbose {
                eprintln!("{name}: stored at {addr} ({size} bytes)");
            }
            Ok(())
        }
        Put::AlreadyExists => Err(Refused(format!("{name} already exists at {addr}")).into()),
    }
}

/// A name as `p2p-ls` prints it. On a terminal, exactly as GNU `ls`
/// (`--quoting-style=shell-escape`) shows it. Elsewhere the name as it is,
/// except that a name holding a newline or another control character is
/// shell-escaped all the same, so that one line is always one name.
fn listed(name: &str, terminal: bool) -> Cow<'_, str> {
    if terminal || name.chars().any(char::is_control) {
        shell_escape(name)
    } else {
        Cow::Borrowed(name)
    }
}

/// GNU `ls --quoting-style=shell-escape`: a name that needs no quoting as it
/// is; else in single quotes, or double quotes when it holds a `'` and
/// nothing special inside double quotes; control characters as `$'\n'`
/// (C escapes where they exist, else octal bytes, `$'\033'`).
fn shell_escape(name: &str) -> Cow<'_, str> {
    let safe_at = |i: usize, c: char| {
        c.is_alphanumeric()
            || (!c.is_ascii() && !c.is_control())
            || "%+,-./:@]_{}".contains(c)
            || (i > 0 && (c == '#' || c == '~'))
    };
    if !name.is_empty() && name.chars().enumerate().all(|(i, c)| safe_at(i, c)) {
        return Cow::Borrowed(name);
    }
    let controls = name.chars().any(char::is_control);
    if !controls && name.contains('\'') && !name.contains(['"', '$', '`', '\\', '!']) {
        return Cow::Owned(format!("\"{name}\""));
    }
    let mut out = String::with_capacity(name.len() + 8);
    out.push('\'');
    let (mut quoted, mut dollar) = (true, false);
    for c in name.chars() {
        if c.is_control() {
            if quoted {
                out.push('\'');
                quoted = false;
            }
            if !dollar {
                out.push_str("$'");
                dollar = true;
            }
            match c {
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\x0b' => out.push_str("\\v"),
                '\x0c' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\{b:03o}"));
                    }
                }
            }
            continue;
        }
        if dollar {
            out.push('\'');
            dollar = false;
        }
        if !quoted {
            out.push('\'');
            quoted = true;
        }
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    if dollar || quoted {
        out.push('\'');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_gnu_ls_shell_escape_does() {
        // Each pair as `ls --quoting-style=shell-escape` (coreutils 9) shows it.
        for (name, shown) in [
            ("plain.txt", "plain.txt"),
            ("a\nb", "'a'$'\\n''b'"),
            ("\te", "''$'\\t''e'"),
            ("esc\x1b", "'esc'$'\\033'"),
            ("q\x01\x7f", "'q'$'\\001\\177'"),
            ("c\u{85}d", "'c'$'\\302\\205''d'"),
            ("x y", "'x y'"),
            ("it's", "\"it's\""),
            ("it's$", "'it'\\''s$'"),
            ("it's\nx", "'it'\\''s'$'\\n''x'"),
            ("$dollar", "'$dollar'"),
            ("#a", "'#a'"),
            ("a#", "a#"),
            ("~a", "'~a'"),
            ("a~", "a~"),
            ("a=b", "'a=b'"),
            ("a^b", "'a^b'"),
            ("a\"b", "'a\"b'"),
            ("a{b}", "a{b}"),
            ("-x", "-x"),
            ("é", "é"),
        ] {
            assert_eq!(shell_escape(name), shown, "{name:?}");
        }
    }

    #[test]
    fn off_a_terminal_only_control_characters_are_escaped() {
        assert_eq!(listed("x y", false), "x y");
        assert_eq!(listed("x y", true), "'x y'");
        assert_eq!(listed("a\nb", false), "'a'$'\\n''b'");
    }

    #[test]
    fn addresses_come_as_one_operand_or_two() {
        let ops = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (two, one) = (ops(&["h", "7", "f"]), ops(&["h:7", "f"]));
        let (a, rest) = address(&two, 1).unwrap();
        assert_eq!((a.as_str(), rest), ("h:7", &ops(&["f"])[..]));
        let (a, rest) = address(&one, 1).unwrap();
        assert_eq!((a.as_str(), rest), ("h:7", &ops(&["f"])[..]));
        assert_eq!(address(&ops(&["::1", "7"]), 0).unwrap().0, "[::1]:7");
        assert_eq!(address(&ops(&["[::1]:7"]), 0).unwrap().0, "[::1]:7");
        assert!(address(&ops(&["h"]), 0).is_err());
        assert!(address(&ops(&["h", "x"]), 0).is_err());
        assert!(address(&ops(&["h:7", "f", "g", "i"]), 1).is_err());
    }
}

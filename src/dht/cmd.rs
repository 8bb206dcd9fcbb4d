//! The DHT programs' bodies, called by the thin binaries: argument
//! checks, the library call, and what gets printed (anyhow for context).
//! The only file of the dht system that uses `anyhow`.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::HumanBytes;

use clap::Args;

use crate::cli::{self, ClientArgs, DaemonArgs, Interrupted, Level, Refused, Verbosity, ViewArgs};
use crate::dht::client::{self, Dest, Fetched, GetOptions, Put, Step};
use crate::dht::proto::MAX_HEARTBEAT;
use crate::dht::{index, superd};
use crate::name::FileName;
use crate::net::HostPort;
use crate::shutdown::Shutdown;
use crate::transfer::Overwrite;

/// `p2p-index`'s flags.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `p2p-index`: serves the ring until Ctrl-C or SIGTERM.
pub fn index(a: IndexArgs) -> anyhow::Result<()> {
    index::run(
        &a.daemon.listen_or(index::DEFAULT_LISTEN),
        a.daemon.limits(),
        a.verbosity.level(),
        a.view.http.as_deref(),
    )?;
    Ok(())
}

/// `p2p-superd`'s flags.
#[derive(Debug, Clone, Args)]
pub struct SuperdArgs {
    /// The repository folder
    #[arg(default_value = ".")]
    pub repo_dir: PathBuf,

    /// The index server, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = superd::DEFAULT_INDEX,
          value_parser = cli::parse_addr)]
    pub index: HostPort,

    /// Seconds between synchronizer rounds (e.g. 2, 0.5, 250ms)
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = cli::parse_period)]
    pub sync_interval: Duration,

    /// Seconds between keep-alives on a quiet control connection to the
    /// index (e.g. 5, 0.5, 250ms; at most 10)
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = cli::parse_period)]
    pub heartbeat: Duration,

    #[command(flatten)]
    pub daemon: DaemonArgs,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `p2p-superd`: runs a supernode until Ctrl-C or SIGTERM, then leaves.
pub fn superd(a: SuperdArgs) -> anyhow::Result<()> {
    if a.heartbeat > MAX_HEARTBEAT {
        bail!(
            "--heartbeat must be at most {} seconds",
            MAX_HEARTBEAT.as_secs_f64()
        );
    }
    superd::run(superd::Options {
        repo: a.repo_dir,
        index: a.index.to_string(),
        listen: a.daemon.listen_or(superd::DEFAULT_LISTEN),
        sync_interval: a.sync_interval,
        heartbeat: a.heartbeat,
        limits: a.daemon.limits(),
        level: a.verbosity.level(),
        http: a.view.http,
    })?;
    Ok(())
}

/// The supernode's address from the operands, `HOST:PORT` or `HOST PORT`:
/// `first` and, when the two-operand form was used, `port`.
fn address(first: &str, port: Option<&str>) -> anyhow::Result<HostPort> {
    match port {
        None => Ok(cli::parse_addr(first).map_err(anyhow::Error::msg)?),
        Some(p) => {
            let (host, given) = HostPort::parse_opt_port(first).map_err(anyhow::Error::msg)?;
            if given.is_some() {
                bail!("{first:?} already has a port; give HOST:PORT or HOST PORT, not both");
            }
            let port = match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => bail!("{p:?} is not a port number"),
            };
            Ok(HostPort::new(&host, port))
        }
    }
}

/// The supernode and the operand after it, from `HOST:PORT OPERAND` or
/// the older `HOST PORT OPERAND` (where `operand` holds the port).
fn address_and<'a>(
    first: &str,
    operand: &'a String,
    after_port: Option<&'a String>,
) -> anyhow::Result<(String, &'a String)> {
    Ok(match after_port {
        None => (address(first, None)?.to_string(), operand),
        Some(last) => (address(first, Some(operand))?.to_string(), last),
    })
}

/// `p2p-ls`'s operands and flags.
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// The supernode, HOST:PORT
    #[arg(value_name = "HOST:PORT")]
    pub server: String,
    /// The supernode's port, for the older form HOST PORT
    #[arg(value_name = "PORT", hide = true)]
    pub port: Option<String>,
    /// Print a JSON array of the exact names instead
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `p2p-ls HOST:PORT` / `p2p-ls HOST PORT`: prints the names of one
/// supernode's repository, escaped (see `shell_escape`) unless `json`.
pub fn ls(a: LsArgs) -> anyhow::Result<()> {
    let addr = address(&a.server, a.port.as_deref())?.to_string();
    let (level, timeouts) = a.client.level_and_timeouts();
    let verbose = level == Level::Verbose;
    let names = client::list_noting(&addr, &timeouts, |line| {
        if verbose {
            eprintln!("{line}");
        }
    })
    .with_context(|| addr.clone())?;
    // The list's header, before the names.
    if verbose {
        let n = names.len();
        eprintln!("{addr}: {n} name{}", if n == 1 { "" } else { "s" });
    }
    let mut out = cli::stdout();
    if a.json {
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
    Ok(())
}

/// `p2p-get`'s operands and flags.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The supernode, HOST:PORT
    #[arg(value_name = "HOST:PORT")]
    pub server: String,
    /// The file's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// NAME, for the older form HOST PORT NAME
    #[arg(value_name = "NAME", hide = true)]
    pub name_after_port: Option<String>,
    /// Where to write it: a file, a folder to put NAME in, or `-` for
    /// stdout (default: NAME in the current folder)
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace a file already at the destination (default: refuse, exit 1)
    #[arg(short, long)]
    pub force: bool,
    /// Resume an interrupted download from its partial file; the whole file's
    /// digest is still checked
    #[arg(short = 'c', long = "continue")]
    pub resume: bool,
    /// Remove the partial file when the download fails or is interrupted
    /// (default: keep it for --continue, as wget -c and rsync --partial do)
    #[arg(
        long,
        visible_alias = "remove-on-error",
        conflicts_with = "keep_partial"
    )]
    pub no_keep_partial: bool,
    /// Keep the partial file when the download fails or is interrupted
    /// (the default; kept for scripts written before it was)
    #[arg(long, hide = true)]
    pub keep_partial: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `p2p-get HOST:PORT NAME` / `p2p-get HOST PORT NAME`: downloads NAME to
/// the current folder, to PATH, or to stdout (`-o -`). An interrupted or
/// failed download keeps its partial file and says how to resume it,
/// unless asked not to; one that fails verification leaves nothing.
pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let (addr, name) = address_and(&args.server, &args.name, args.name_after_port.as_ref())?;
    let (level, timeouts) = args.client.level_and_timeouts();
    let name = FileName::new(name.as_str())?;
    let dest = match &args.output {
        Some(p) if p == Path::new("-") => Dest::Stdout,
        Some(p) if p.is_dir() => Dest::Path(p.join(name.as_str())),
        Some(p) => Dest::Path(p.clone()),
        None => Dest::Path(PathBuf::from(name.as_str())),
    };
    let shutdown = Shutdown::install()?;
    let opts = GetOptions {
        dest,
        overwrite: if args.force {
            Overwrite::Replace
        } else {
            Overwrite::Never
        },
        resume: args.resume,
        keep_partial: !args.no_keep_partial,
        timeouts,
        shutdown: Some(shutdown.clone()),
    };
    let mut kept: Option<PathBuf> = None;
    let report = |step: Step<'_>| match step {
        Step::Asking(at) if level == Level::Verbose => eprintln!("asking {at} for {name}"),
        Step::Connected(at) if level == Level::Verbose => eprintln!("connected to {at}"),
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
        Step::KeptPartial(p) => kept = Some(p.to_path_buf()),
        _ => {}
    };
    let started = Instant::now();
    let fetched = client::get(&addr, &name, &opts, report, |len| bar(level, len, &name));
    // What was kept, and the command that resumes it; an empty partial
    // file is no help to anyone and goes.
    let kept = kept.and_then(|p| match std::fs::metadata(&p) {
        Ok(m) if m.len() > 0 => Some((p, m.len())),
        _ => {
            let _ = std::fs::remove_file(&p);
            None
        }
    });
    let resume = || resume_command(&addr, &name, args.output.as_deref());
    if shutdown.is_triggered() {
        let what = match &kept {
            Some((p, len)) => format!(
                "interrupted; kept {len} bytes of {name} in {}; resume with: {}",
                p.display(),
                resume()
            ),
            None => "interrupted".to_string(),
        };
        return Err(Interrupted(what).into());
    }
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            if let Some((p, len)) = &kept
                && level >= Level::Normal
            {
                crate::diag!(
                    "partial download kept in {} ({len} bytes); resume it with: {}",
                    p.display(),
                    resume()
                );
            }
            return Err(e.into());
        }
    };
    match fetched {
        Fetched::Got { from, size } => {
            let into = match &opts.dest {
                Dest::Path(p) => p.display().to_string(),
                Dest::Stdout => "standard output".to_string(),
            };
            finished(
                level,
                &format!(
                    "got {name} ({}) from {from} into {into}, BLAKE3 verified, in {}",
                    HumanBytes(size),
                    seconds(started.elapsed())
                ),
            );
            Ok(())
        }
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

/// The command line that resumes a download of `name` from `addr` into
/// `output` (as it was given), each word quoted for a POSIX shell.
fn resume_command(addr: &str, name: &FileName, output: Option<&Path>) -> String {
    let mut words = vec![
        "p2p-get".to_string(),
        "-c".to_string(),
        shell_escape(addr).into_owned(),
        shell_escape(name.as_str()).into_owned(),
    ];
    if let Some(out) = output {
        words.push("-o".into());
        words.push(shell_escape(&out.to_string_lossy()).into_owned());
    }
    words.join(" ")
}

/// A progress bar for `len` bytes, none when quiet.
fn bar(level: Level, len: u64, name: &FileName) -> indicatif::ProgressBar {
    if level == Level::Quiet {
        indicatif::ProgressBar::hidden()
    } else {
        cli::byte_bar(len, name.as_str())
    }
}

/// `p2p-put`'s operands and flags.
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// The supernode, HOST:PORT
    #[arg(value_name = "HOST:PORT")]
    pub server: String,
    /// The local file
    #[arg(value_name = "PATH")]
    pub path: String,
    /// PATH, for the older form HOST PORT PATH
    #[arg(value_name = "PATH", hide = true)]
    pub path_after_port: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `p2p-put HOST:PORT PATH` / `p2p-put HOST PORT PATH`: uploads a local
/// file under its own name.
pub fn put(a: PutArgs) -> anyhow::Result<()> {
    let (addr, path) = address_and(&a.server, &a.path, a.path_after_port.as_ref())?;
    let (level, timeouts) = a.client.level_and_timeouts();
    let path = Path::new(path.as_str());
    let name =
        FileName::from_path(path).map_or_else(|_| path.display().to_string(), |n| n.to_string());
    let note = |line: &str| {
        if level == Level::Verbose {
            eprintln!("{line}");
        }
    };
    let started = Instant::now();
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
            finished(
                level,
                &format!(
                    "put {name} ({}) at {addr}, BLAKE3 verified there, in {}",
                    HumanBytes(size),
                    seconds(started.elapsed())
                ),
            );
            Ok(())
        }
        Put::AlreadyExists => Err(Refused(format!("{name} already exists at {addr}")).into()),
    }
}

/// The one line that ends a transfer on a terminal (what, where, size,
/// verified, time), so a success is seen; none under -q or off a terminal,
/// where the exit status says it.
fn finished(level: Level, line: &str) {
    if level >= Level::Normal && std::io::stderr().is_terminal() {
        eprintln!("{line}");
    }
}

/// A duration as people read it: `0.42 s`, `12.3 s`, `2 min 05 s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {:02} s", d.as_secs() / 60, d.as_secs() % 60)
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
    fn times_read_as_people_read_them() {
        assert_eq!(seconds(Duration::from_millis(420)), "0.42 s");
        assert_eq!(seconds(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(seconds(Duration::from_secs(125)), "2 min 05 s");
    }

    #[test]
    fn addresses_come_as_one_operand_or_two() {
        let at = |a: &str, p: Option<&str>| address(a, p).map(|a| a.to_string());
        assert_eq!(at("h", Some("7")).unwrap(), "h:7");
        assert_eq!(at("h:7", None).unwrap(), "h:7");
        assert_eq!(at("::1", Some("7")).unwrap(), "[::1]:7");
        assert_eq!(at("[::1]:7", None).unwrap(), "[::1]:7");
        assert_eq!(
            at("h", None).unwrap_err().to_string(),
            "missing port in \"h\" (expected HOST:PORT)"
        );
        assert!(at("h", Some("x")).is_err());
        assert!(at("h:7", Some("8")).is_err());
    }
}

//! What every program shares: `--version` names the program, command-line
//! mistakes read as one sentence that starts with the program's name, and
//! the flag vocabulary (lengths of time, sizes, HOST:PORT) is the same.

use crate::bin;
use crate::harness::cmd;

/// Every program.
const PROGRAMS: [(&str, &str); 15] = [
    ("p2p-index", bin!("p2p-index")),
    ("p2p-superd", bin!("p2p-superd")),
    ("p2p-ls", bin!("p2p-ls")),
    ("p2p-get", bin!("p2p-get")),
    ("p2p-put", bin!("p2p-put")),
    ("bt-tracker", bin!("bt-tracker")),
    ("bt-peer", bin!("bt-peer")),
    ("kv-servent", bin!("kv-servent")),
    ("kv-query", bin!("kv-query")),
    ("rdird", bin!("rdird")),
    ("rls", bin!("rls")),
    ("nap-server", bin!("nap-server")),
    ("nap-time", bin!("nap-time")),
    ("nap-log", bin!("nap-log")),
    ("nap-peer", bin!("nap-peer")),
];

#[test]
fn version_names_the_program() {
    for (name, path) in PROGRAMS {
        let out = cmd(path).arg("--version").run().ok();
        assert_eq!(out.stdout.trim(), format!("{name} 0.1.0"), "{}", out.dump());
    }
}

#[test]
fn an_unknown_option_is_one_sentence_then_the_usage() {
    for (name, path) in PROGRAMS {
        let out = cmd(path).arg("--no-such-flag").run().code(2);
        let first = out.stderr.lines().next().unwrap_or_default().to_string();
        assert_eq!(
            first,
            format!("{name}: unknown option --no-such-flag"),
            "{}",
            out.dump()
        );
        out.stderr_has(&format!("Try '{name} --help' for more information."));
    }
}

#[test]
fn argument_mistakes_read_as_sentences() {
    let first_line = |args: &[&str], program: &str| {
        let out = cmd(program).args(args).run().code(2);
        out.stderr.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(
        first_line(&[], bin!("p2p-get")),
        "p2p-get: missing HOST:PORT and NAME"
    );
    assert_eq!(
        first_line(&["127.0.0.1:1"], bin!("p2p-get")),
        "p2p-get: missing NAME"
    );
    assert_eq!(
        first_line(&["h:1", "a", "b", "c"], bin!("p2p-put")),
        "p2p-put: unexpected argument \"c\""
    );
    assert_eq!(
        first_line(&["--timeout", "soon", "h:1"], bin!("p2p-ls")),
        "p2p-ls: --timeout: \"soon\" is not a length of time (seconds like 5 or 0.5, or 250ms, 2m, 1h)"
    );
    assert_eq!(
        first_line(&["127.0.0.1", "?k"], bin!("kv-query")),
        "kv-query: missing port in \"127.0.0.1\" (expected HOST:PORT)"
    );
    assert_eq!(
        first_line(&["--listen", "127.0.0.1"], bin!("p2p-index")),
        "p2p-index: --listen: missing port in \"127.0.0.1\" (expected HOST:PORT; port 0 picks a free one)"
    );
    assert_eq!(
        first_line(&["70000", "x.kv"], bin!("kv-servent")),
        "kv-servent: PORT: 70000 is not in 0..=65535"
    );
    // A subcommand's mistake points at the subcommand's help.
    cmd(bin!("bt-peer"))
        .arg("fetch")
        .run()
        .code(2)
        .stderr_has("bt-peer: missing WHAT")
        .stderr_has("Try 'bt-peer fetch --help' for more information.");
    assert_eq!(
        first_line(&["--mode", "foo"], bin!("rdird")),
        "rdird: \"foo\" is not one of stateful, stateless, rpc (--mode)"
    );
    assert_eq!(
        first_line(&["share", "f", "--upload-limit", "4Q"], bin!("bt-peer")),
        "bt-peer: --upload-limit: \"4Q\": unknown unit (use K, M, G or T, powers of 1024: 64K, 1M, 1MiB)"
    );
}

#[test]
fn lengths_of_time_take_units_everywhere() {
    // A time with a unit where seconds were the only form: the flag is
    // accepted, and the program goes on to the next thing it checks.
    cmd(bin!("p2p-ls"))
        .args(["--timeout", "250ms", "127.0.0.1:1"])
        .run()
        .code(2)
        .stderr_has("p2p-ls: 127.0.0.1:1: connection refused");
    cmd(bin!("kv-query"))
        .args(["--wait", "100ms", "--timeout", "2m", "127.0.0.1:1", "?k"])
        .run()
        .code(2)
        .stderr_has("kv-query: 127.0.0.1:1: connection refused");
}

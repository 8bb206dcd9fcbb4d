//! kv-query: one-shot, shell and pipeline modes, help and exit codes, reconnecting; the servent's stop.

use super::*;

#[test]
fn kv_query_modes_and_exit_codes() {
    let mut net = start_topology("diamond", |_| vec![]);
    let s1 = net.addr("s1");

    net.query("s1", "?no-such-key", &DIAMOND, &[]);
    cmd(bin!("kv-query"))
        .args([&s1, "hello"])
        .run()
        .code(2)
        .stderr_has("unknown command");
    cmd(bin!("kv-query"))
        .args(["--wait", "0.1", "127.0.0.1:1", "?k"])
        .run()
        .code(2)
        .stderr_has("kv-query: 127.0.0.1:1: connection refused");

    // A pipeline: one command per line; unknown ones are reported and
    // skipped; Q ends it before the last line. Its queries all go out at
    // once, before any answer is waited for; the one wait is ended by the
    // test once every flood is over. One query went unanswered: exit 1.
    let before = client_lines(net.get("s1")).len();
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["--wait", NEVER, "--settle", NEVER, &s1])
            .stdin("?ssh\nbogus\n\n?   pop3\nT\n?nothing\nQ\n?ftp\n"),
    );
    let origin = net.next_origin("s1", before);
    // Sequence numbers count queries only, from a random start:
    // ?ssh +0, ?pop3 +1, T +2, ?nothing +3.
    let first = net.first_seq("s1", &origin);
    for (k, answerers) in [(0, &["s1"][..]), (1, &["s4"]), (2, &DIAMOND), (3, &[])] {
        net.settled(&origin, first.wrapping_add(k), &DIAMOND, answerers);
    }
    q.end_wait();
    q.p.wait_stderr(|l| l.contains("?nothing: no response received"));
    // ?nothing went unanswered: exit 1.
    assert_eq!(q.p.wait_exit().code(), Some(1), "{}", q.p.dump());
    q.p.wait_stderr(|l| l.contains("unknown command \"bogus\""));
    q.p.wait_stderr(|l| l.contains("1 of 4 queries got no response"));
    let lines = q.p.stdout_lines();
    assert_eq!(lines.len(), 6, "{}", q.p.dump());
    let got = values(&lines);
    assert_eq!(got[0], "22/tcp # The Secure Shell (SSH) Protocol");
    assert_eq!(got[1], "110/tcp pop-3 # Post Office Protocol - Version 3");
    assert!(got[2..].contains(&s1), "{}", q.p.dump());
    let s1p = net.get("s1");
    let (s2, s3, s4) = (
        first.wrapping_add(2),
        first.wrapping_add(3),
        first.wrapping_add(4),
    );
    s1p.wait_stdout_any(|l| l == format!("request topo {origin} seq {s2}"));
    s1p.wait_stdout_any(|l| l == format!("request key {origin} seq {s3} nothing"));
    assert!(
        !s1p.stdout_lines()
            .iter()
            .any(|l| l.contains(&format!(" seq {s4}"))),
        "{}",
        s1p.dump()
    );
}

#[test]
fn servent_stops_cleanly_and_reports_stats() {
    let mut net = start_topology("diamond", |_| vec![]);
    net.query("s1", "?imap", &DIAMOND, &["s4"]);
    let mut s4 = net.remove("s4");
    s4.terminate();
    assert!(s4.wait_exit().success(), "{}", s4.dump());
    let stats = s4.wait_stdout_any(|l| l.starts_with("stats "));
    // s4 is reached once or twice (see the diamond test), answers once.
    assert!(
        stats.contains("floods=2 duplicates=1") || stats.contains("floods=1 duplicates=0"),
        "{stats}"
    );
    assert!(stats.contains("requests=0"), "{stats}");
    assert!(stats.contains("answers=1"), "{stats}");

    // A bad key-value file is refused at start.
    let dir = TempDir::new("flood-badkv");
    let kv = dir.path().join("bad.kv");
    std::fs::write(&kv, format!("k {}\n", "x".repeat(401))).unwrap();
    cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1", "0"])
        .arg(&kv)
        .run()
        .code(2)
        .stderr_has("line 1: value is 401 bytes");
    // A neighbour that is not running is an error.
    let good = dir.path().join("good.kv");
    std::fs::write(&good, "k v\n").unwrap();
    cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1", "0"])
        .arg(&good)
        .arg("127.0.0.1:1")
        .run()
        .code(2)
        .stderr_has("connecting to neighbour 127.0.0.1:1");
    // A neighbour without a port is refused before anything starts.
    cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1", "0"])
        .arg(&good)
        .arg("127.0.0.1")
        .run()
        .code(2)
        .stderr_has("kv-servent: missing port in \"127.0.0.1\" (expected HOST:PORT)");
}

#[test]
fn kv_query_help_and_exit_codes() {
    // help and ? alone list the commands, without asking anyone.
    for q in ["help", "?"] {
        let out = cmd(bin!("kv-query")).args(["127.0.0.1:1", q]).run().ok();
        assert!(
            out.stdout.contains("?KEY") && out.stdout.contains("help"),
            "{}",
            out.dump()
        );
    }
    // --help shows the defaults and examples.
    let out = cmd(bin!("kv-query")).arg("--help").run().ok();
    for needle in ["[default: 4]", "[default: 0]", "Examples:", "Exit status"] {
        assert!(out.stdout.contains(needle), "{needle}\n{}", out.dump());
    }
    let out = cmd(bin!("kv-servent")).arg("--help").run().ok();
    for needle in [
        "[default: 3]",
        "[default: 0.0.0.0]",
        "[default: 256]",
        "[default: 64]",
        "--request-timeout",
        "-q, --quiet",
        "Examples:",
    ] {
        assert!(out.stdout.contains(needle), "{needle}\n{}", out.dump());
    }
    // An unknown command names itself: given as QUERY it is an error (2).
    cmd(bin!("kv-query"))
        .args(["127.0.0.1:1", "hello"])
        .run()
        .code(2)
        .stderr_has("unknown command \"hello\" (help lists the commands)");

    let mut net = start_topology("chain", |_| vec![]);
    let s1 = net.addr("s1");
    // In a pipeline it is reported and skipped; help prints the list; all
    // queries answered: exit 0.
    let before = client_lines(net.get("s1")).len();
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["-v", "--wait", NEVER, "--settle", NEVER, &s1])
            .stdin("help\nbogus\n?ftp\n"),
    );
    let origin = net.next_origin("s1", before);
    let first = net.first_seq("s1", &origin);
    net.settled(&origin, first, &["s1", "s2", "s3", "s4"], &["s1"]);
    q.wait_answers(HELP_LINES);
    q.end_wait();
    assert!(q.p.wait_exit().success(), "{}", q.p.dump());
    q.p.wait_stderr(|l| l.ends_with("unknown command \"bogus\" (help lists the commands)"));
    q.p.wait_stderr(|l| l.contains("answers come to port"));
    q.p.wait_stderr(|l| l.contains(&format!("seq {first}: ?ftp: 1 answer in ")));
    let lines = q.p.stdout_lines();
    assert_eq!(lines[0], "commands:", "{}", q.p.dump());
    assert!(lines[HELP_LINES].starts_with("21/tcp"), "{}", q.p.dump());

    // One query of a pipeline unanswered: exit 1, saying how many.
    let before = client_lines(net.get("s1")).len();
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["--wait", NEVER, "--settle", NEVER, &s1])
            .stdin("?ftp\n?nothing\n"),
    );
    let origin = net.next_origin("s1", before);
    let first = net.first_seq("s1", &origin);
    net.settled(&origin, first, &["s1", "s2", "s3", "s4"], &["s1"]);
    net.settled(
        &origin,
        first.wrapping_add(1),
        &["s1", "s2", "s3", "s4"],
        &[],
    );
    q.end_wait();
    assert_eq!(q.p.wait_exit().code(), Some(1), "{}", q.p.dump());
    q.p.wait_stderr(|l| l.ends_with("?nothing: no response received"));
    q.p.wait_stderr(|l| l.ends_with("1 of 2 queries got no response"));

    // Once every query has an answer, a short quiet spell (--settle) ends
    // the wait by itself, however long --wait is: no signal needed here.
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["--wait", NEVER, "--settle", "0.2", &s1])
            .stdin("?ftp\n?telnet\n"),
    );
    assert!(q.p.wait_exit().success(), "{}", q.p.dump());
    let got = values(&q.p.stdout_lines());
    assert!(
        got[0].starts_with("21/tcp") && got[1].starts_with("23/tcp"),
        "{}",
        q.p.dump()
    );
    let mut one =
        Query::with(cmd(bin!("kv-query")).args(["--wait", NEVER, "--settle", "0.2", &s1, "?ftp"]));
    assert!(one.p.wait_exit().success(), "{}", one.p.dump());
    assert!(values(&one.p.stdout_lines())[0].starts_with("21/tcp"));
}

/// Lines of kv-query's command list.
const HELP_LINES: usize = 6;

#[test]
fn two_clients_on_the_same_port_back_to_back_are_both_answered() {
    // The servent drops a query whose (origin, seq) it saw lately: a new
    // client on a recent one's port must not look like it.
    let dir = TempDir::new("kv-same-port");
    let s = ssh_servent(&dir, &[]);
    let port = {
        let l = high_port_listener();
        l.local_addr().unwrap().port().to_string()
    };
    let mut seqs = Vec::new();
    for _ in 0..2 {
        cmd(bin!("kv-query"))
            .args(["--port", &port, "--wait", "1", &s.addr, "?ssh"])
            .run()
            .code(0)
            .stdout_has(SSH);
        let lines = s.stdout_lines();
        let seq = lines
            .iter()
            .rfind(|l| l.starts_with("request key "))
            .and_then(|l| {
                l.split(" seq ")
                    .nth(1)?
                    .split(' ')
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no request logged\n{}", s.dump()));
        seqs.push(seq);
    }
    assert_ne!(seqs[0], seqs[1], "{}", s.dump());
    assert!(
        !s.stdout_lines().iter().any(|l| l.starts_with("duplicate ")),
        "{}",
        s.dump()
    );
}

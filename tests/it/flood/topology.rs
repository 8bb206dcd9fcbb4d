//! Topologies: each query answered once, the TTL's reach, topology paths, neighbours that die or send garbage.

use super::*;

#[test]
fn diamond_answers_exactly_once() {
    let mut net = start_topology("diamond", |_| vec![]);

    let (got, origin) = net.query("s1", "?imap", &DIAMOND, &["s4"]);
    assert_eq!(
        got,
        vec!["143/tcp imap2 # Internet Message Access Protocol"],
        "{}",
        net.dump()
    );
    // The two copies s1 sends around the cycle meet somewhere: usually at
    // s4, but s2 or s3 when the copy coming round through s4 wins the race.
    let dup = format!("duplicate {origin} seq ");
    wait_until(
        "a duplicate dropped on the cycle",
        || {
            net.procs
                .iter()
                .any(|(_, p)| p.stdout_lines().iter().any(|l| l.starts_with(&dup)))
                .then_some(())
        },
        || net.dump(),
    );
    let s4 = net.get("s4");
    let answered = s4
        .stdout_lines()
        .iter()
        .filter(|l| l.starts_with(&format!("answered {origin} seq ")))
        .count();
    assert_eq!(answered, 1, "{}", s4.dump());

    // A key held on both sides is answered by both.
    let (got, _) = net.query("s1", "?http", &DIAMOND, &["s2", "s3"]);
    assert_eq!(
        value_set(&got),
        set(&[
            "80/tcp www # WorldWideWeb HTTP (copy held by s2)",
            "80/tcp www # WorldWideWeb HTTP (copy held by s3)",
        ])
    );

    // Every servent holds "servent": each answers once.
    let (got, _) = net.query("s1", "?servent", &DIAMOND, &DIAMOND);
    assert_eq!(value_set(&got), set(&DIAMOND));
}

#[test]
fn chain_reach_follows_the_ttl() {
    let nodes = read_topology("chain");
    let (entry, rest) = nodes.split_last().unwrap();
    assert_eq!(entry.name, "s1");
    let mut net = Net { procs: Vec::new() };
    for node in rest {
        net.start(node, &[]);
    }
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    for ttl in 1..=3usize {
        net.start(entry, &["--ttl", &ttl.to_string()]);
        let reach = &names[..=ttl];

        let (got, origin) = net.query("s1", "?servent", reach, reach);
        assert_eq!(value_set(&got), set(reach), "ttl {ttl}");

        // The last servent reached stops the flood; the next never sees it.
        let last = names[ttl];
        net.get(last)
            .wait_stdout_any(|l| l.starts_with(&format!("stopped {origin} seq ")));
        let next = net.get(names[ttl + 1]);
        assert!(
            !next.stdout_lines().iter().any(|l| l.contains(&origin)),
            "{} saw the query\n{}",
            names[ttl + 1],
            next.dump()
        );

        // A key held just beyond the reach is not found.
        let beyond = ["ftp", "ssh", "telnet", "smtp", "domain"][ttl + 1];
        net.query("s1", &format!("?{beyond}"), reach, &[]);

        let mut old = net.remove("s1");
        old.terminate();
        assert!(old.wait_exit().success(), "{}", old.dump());
        net.get("s2").wait_stdout(|l| l.starts_with("link closed "));
    }
}

#[test]
fn topology_strings_name_each_hop() {
    let mut net = start_topology("chain", |_| vec![]);
    let reach = ["s1", "s2", "s3", "s4"];
    let a: Vec<String> = reach.iter().map(|n| net.addr(n)).collect();
    let (got, _) = net.query("s1", "T", &reach, &reach);
    // With TTL 3: s1 and three hops, each answer the path so far.
    let expected: BTreeSet<String> = (1..=4).map(|n| a[..n].join(" ")).collect();
    assert_eq!(value_set(&got), expected, "{}", net.dump());

    // In the diamond the paths form a tree rooted at s1: each servent
    // answers once, with the path its first copy took, which is the path
    // of the servent it came from plus itself. Usually s2 and s3 get theirs
    // from s1, but on a busy machine one may first hear it through s4.
    let mut net = start_topology("diamond", |_| vec![]);
    let addr: Vec<String> = DIAMOND.iter().map(|n| net.addr(n)).collect();
    let edges = [(0, 1), (0, 2), (1, 3), (2, 3)];
    let linked = |x: &str, y: &str| {
        edges.iter().any(|&(i, j)| {
            (x, y) == (addr[i].as_str(), addr[j].as_str())
                || (y, x) == (addr[i].as_str(), addr[j].as_str())
        })
    };
    let (got, _) = net.query("s1", "T", &DIAMOND, &DIAMOND);
    let paths = value_set(&got);
    let ends: BTreeSet<&str> = paths
        .iter()
        .filter_map(|p| p.split(' ').next_back())
        .collect();
    assert_eq!(ends.len(), 4, "one answer each: {paths:?}");
    for p in &paths {
        let hops: Vec<&str> = p.split(' ').collect();
        assert_eq!(hops[0], addr[0], "{p}");
        assert!(hops.windows(2).all(|w| linked(w[0], w[1])), "{p}");
        if let Some((_, before)) = hops.split_last().filter(|(_, b)| !b.is_empty()) {
            assert!(paths.contains(&before.join(" ")), "{p}: {paths:?}");
        }
    }
}

#[test]
fn a_neighbour_killed_mid_run_is_dropped() {
    let mut net = start_topology("diamond", |_| vec![]);
    net.query("s1", "?telnet", &DIAMOND, &["s2"]);

    net.get("s2").kill();
    net.get("s1").wait_stdout(|l| l.starts_with("link closed "));
    net.get("s4").wait_stdout(|l| l.starts_with("link closed "));

    // s4 is still reached through s3, and answers once.
    let left = ["s1", "s3", "s4"];
    net.query("s1", "?imap", &left, &["s4"]);
    // s2's keys are gone with it.
    net.query("s1", "?telnet", &left, &[]);
    let (got, _) = net.query("s1", "?servent", &left, &left);
    assert_eq!(value_set(&got), set(&left));
}

#[test]
fn garbage_on_a_link_closes_only_that_link() {
    let mut net = start_topology("chain", |_| vec![]);
    let s2 = net.addr("s2");
    let mut bad = |bytes: &[u8], why: &str| {
        let mut c = RawClient::connect(&s2);
        c.send(bytes);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        // The servent closes the link without sending anything.
        assert!(c.read_to_close().is_empty());
        net.get("s2").wait_stderr(|l| l.contains(why));
    };
    // An unknown type on a servent link.
    bad(&[0, 4, 0, 0, 0, 99, 1, 2, 3], "unknown message type 99");
    // Not the protocol at all.
    bad(b"GET / HTTP/1.0\r\n\r\n", "unknown message type 18245");
    // A key over 400 bytes.
    bad(
        &[
            0, 4, 0, 0, 0, 7, 0, 3, 0, 0, 0, 1, 127, 0, 0, 1, 0, 80, 0x01, 0x91,
        ],
        "exceeds the 400-byte limit",
    );
    // A message cut short.
    bad(
        &[0, 4, 0, 0, 0, 7, 0, 3, 0, 0],
        "in the middle of a message",
    );
    // A client sending garbage after its ID.
    bad(
        &[0, 4, 0x9c, 0x40, 0xff, 0xff],
        "unknown message type 65535",
    );

    // Everyone else is still served, through s2.
    let reach = ["s1", "s2", "s3", "s4"];
    let (got, _) = net.query("s1", "?servent", &reach, &reach);
    assert_eq!(value_set(&got), set(&reach));
}

//! Load and attacks: full kinds, connections without an ID, idle and trickling floods, black-hole origins.

use super::*;

#[test]
fn a_full_kind_drops_its_idlest_member_for_a_newcomer() {
    let dir = TempDir::new("flood-caps");
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "ssh 22/tcp # SSH\n").unwrap();
    let mut s = servent(&kv, &[], &["--max-clients", "2", "--max-links", "1"]);

    // Two clients that say who they are, then nothing more, fill the
    // client places; a third one gets in, and the one idle longest is
    // dropped for it, with a line on stderr.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut c = RawClient::connect(&s.addr);
        c.send(&id_bytes(40_000));
        s.wait_stdout(|l| l.starts_with("client "));
        idle.push(c);
    }
    let first = idle[0].stream.local_addr().unwrap().to_string();
    let mut third = RawClient::connect(&s.addr);
    third.send(&id_bytes(40_000));
    s.wait_stdout(|l| l.starts_with("client "));
    assert!(idle[0].read_to_close().is_empty());
    s.wait_stderr(|l| {
        l.contains(&format!("{first}: dropped (idle for "))
            && l.contains("already 2 client connections open and")
    });

    // Neighbour links have their own places: the newcomer takes the
    // place of the one idle longest.
    let mut n1 = RawClient::connect(&s.addr);
    n1.send(&id_bytes(0));
    s.wait_stdout(|l| l.starts_with("link in "));
    let mut n2 = RawClient::connect(&s.addr);
    n2.send(&id_bytes(0));
    s.wait_stdout(|l| l.starts_with("link in "));
    assert!(n1.read_to_close().is_empty());
    s.wait_stderr(|l| l.contains("already 1 neighbour links open and"));
    s.wait_stdout_any(|l| l.starts_with("link closed "));

    // A real client is served, taking an idle client's place.
    let q = Query::start(&s.addr, "?ssh");
    s.wait_stdout(|l| l.starts_with("client "));
    let out = q.finish_after(1);
    assert_eq!(values(&out), ["22/tcp # SSH"], "{}", s.dump());
    drop((third, n2));
}

#[test]
fn a_connection_without_an_id_is_closed_at_the_request_deadline() {
    let dir = TempDir::new("flood-noid");
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "k v\n").unwrap();
    let s = servent(&kv, &[], &["--request-timeout", "1"]);
    let mut silent = RawClient::connect(&s.addr);
    assert!(silent.read_to_close().is_empty());
    s.wait_stderr(|l| l.contains("closed: no complete request within 1s"));
    // Half an ID is no better.
    let mut half = RawClient::connect(&s.addr);
    half.send(&[0x00, 0x04, 0x9c]);
    assert!(half.read_to_close().is_empty());
}

/// A real client, doing what kv-query does: listens for answers, sends
/// its ID and a KEYREQ for `key`, and takes the answer `value` the servent
/// sends back, every step within `SERVED_WITHIN`.
fn key_probe(addr: &str, key: &'static str, value: &'static str) -> impl Fn() + use<> {
    static SEQ: AtomicU32 = AtomicU32::new(1000);
    let addr: SocketAddr = addr.parse().unwrap();
    move || {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let answers = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = answers.local_addr().unwrap().port();
        let link = TcpStream::connect_timeout(&addr, SERVED_WITHIN)
            .unwrap_or_else(|e| panic!("a real client could not connect: {e}"));
        link.set_write_timeout(Some(SERVED_WITHIN)).unwrap();
        (&link)
            .write_all(&id_bytes(port))
            .and_then(|()| (&link).write_all(&keyreq_bytes(seq, key)))
            .unwrap_or_else(|e| panic!("a real client could not ask: {e}"));
        let mut s = accept_within(answers, SERVED_WITHIN)
            .unwrap_or_else(|| panic!("a real client got no answer within {SERVED_WITHIN:?}"));
        s.set_read_timeout(Some(SERVED_WITHIN)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("reading the answer: {e}"));
        assert_eq!(got, resp_bytes(seq, value), "the answer");
        drop(link);
    }
}

/// Runs `probe` and returns how long it took.
fn timed(probe: &impl Fn()) -> Duration {
    let started = Instant::now();
    probe();
    started.elapsed()
}

/// Runs kv-query `?KEY` against `addr` and returns the time until its
/// answer line; it must then exit 0 with exactly that answer.
fn kv_query_timed(addr: &str, key: &str, value: &str) -> Duration {
    let started = Instant::now();
    let mut q = Query::start(addr, &format!("?{key}"));
    q.wait_answers(1);
    let waited = started.elapsed();
    assert_eq!(values(&q.finish_after(1)), [value]);
    waited
}

#[test]
fn the_servent_serves_real_clients_through_idle_trickling_and_client_floods() {
    let dir = TempDir::new("flood-exhaust");
    // Fewer client places than connections, so both the core and the
    // servent's client cap drop connections for newcomers.
    let mut s = ssh_servent(&dir, &["-q", "--max-clients", "200"]);
    let probe = key_probe(&s.addr, "ssh", SSH);
    // A trickled ID never completes: the byte 0x00 makes the type 0, so
    // each attacker is turned away after its second byte or at the deadline.
    exhaustion("kv-servent", &s, 0x00, &probe);
    let baseline = usage(s.pid());

    // Connections that never send an ID: the core drops the oldest.
    for n in [64, ATTACKERS] {
        let silent = idle_sockets(&s.addr, n);
        let waited = timed(&probe);
        let by_kv_query = kv_query_timed(&s.addr, "ssh", SSH);
        eprintln!(
            "kv-servent, {n} connections without an ID: probe served in {waited:?}, \
             kv-query answered in {by_kv_query:?}"
        );
        drop(silent);
    }
    wait_for_baseline(&s, baseline, "kv-servent after connections without an ID");
    // Once `who` fill the client places (200 more than `before`): the
    // probe's and kv-query's times and the peak usage, said of `doing`.
    let report_full = |before: usize, who: &str, doing: &str| {
        wait_until(
            &format!("the {who} to fill the client places"),
            || (client_lines(&s).len() >= before + 200).then_some(()),
            || s.dump(),
        );
        let peak = usage(s.pid());
        let waited = timed(&probe);
        let by_kv_query = kv_query_timed(&s.addr, "ssh", SSH);
        eprintln!(
            "kv-servent, {ATTACKERS} {doing}: probe served in {waited:?}, kv-query answered \
             in {by_kv_query:?}; fds {} threads {}",
            peak.fds, peak.threads
        );
    };

    // Clients that send their ID and then idle: the client places (200)
    // and the core's (256) are full; the idlest make room.
    let before = client_lines(&s).len();
    let idle: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.write_all(&id_bytes(40_000)).unwrap();
            c
        })
        .collect();
    report_full(before, "idle clients", "clients idle after their ID");
    drop(idle);
    wait_for_baseline(&s, baseline, "kv-servent after idle clients");
    s.wait_stderr(|l| l.contains("already 200 client connections open and"));
    probe();

    // Clients that send their ID, then begin a KEYREQ and trickle it, one
    // byte a second: always in the middle of a message.
    let before = client_lines(&s).len();
    // After an ID and a KEYREQ's type, the 0x01 bytes make a key of 257
    // bytes: never a whole message, always a little progress.
    let trickle = Trickle::after(
        &s.addr,
        ATTACKERS,
        &[&id_bytes(40_001)[..], &[0x00, 0x05]].concat(),
        0x01,
    );
    report_full(
        before,
        "trickling clients",
        "clients trickling a KEYREQ after their ID",
    );
    drop(trickle);
    wait_for_baseline(&s, baseline, "kv-servent after trickling clients");
    probe();
    s.terminate();
    assert!(s.wait_exit().success(), "{}", s.dump());
}

/// A listener that never accepts, with its accept queue already full, so
/// a connection to it hangs until the connector gives up (SYNs dropped).
fn black_hole() -> (TcpListener, Vec<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        queued.push(c);
        assert!(queued.len() < 2000, "the accept queue never filled");
    }
    (l, queued)
}

#[test]
fn answers_to_a_black_hole_do_not_starve_real_clients() {
    let dir = TempDir::new("flood-hole");
    let mut s = ssh_servent(&dir, &["-q"]);
    let probe = key_probe(&s.addr, "ssh", SSH);
    probe();
    let (hole, _queued) = black_hole();
    let origin = hole.local_addr().unwrap();

    // A neighbour floods 100 queries a second whose origin never accepts.
    let mut n = RawClient::connect(&s.addr);
    n.send(&id_bytes(0));
    s.wait_stdout(|l| l.starts_with("link in "));
    let baseline = usage(s.pid());
    let (stop, stopped) = mpsc::channel::<()>();
    let flooder = {
        let link = n.stream.try_clone().unwrap();
        thread::spawn(move || {
            let mut seq = 0u32;
            loop {
                if (&link)
                    .write_all(&keyflood_bytes(seq, origin, "ssh"))
                    .is_err()
                {
                    break;
                }
                seq += 1;
                // The attack's pace: 100 floods a second, until told to stop.
                match stopped.recv_timeout(Duration::from_millis(10)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            seq
        })
    };
    // The attack bites: answers to the hole are in flight up to the
    // per-origin bound, the rest dropped and counted.
    s.wait_stderr(|l| {
        l.contains(&format!("answer to {origin} seq ")) && l.contains("already in flight")
    });
    // ... and the first ones give up at their deadline, two seconds and
    // some 200 floods into the attack.
    s.wait_stderr(|l| l.contains(&format!("answer to {origin} seq ")) && l.contains("timed out"));
    let mut peak = usage(s.pid());
    let mut waits = Vec::new();
    for _ in 0..3 {
        waits.push(timed(&probe));
        let u = usage(s.pid());
        peak.fds = peak.fds.max(u.fds);
        peak.threads = peak.threads.max(u.threads);
    }
    let by_kv_query = kv_query_timed(&s.addr, "ssh", SSH);
    drop(stop);
    let sent = flooder.join().unwrap();
    eprintln!(
        "kv-servent, {sent} floods at 100/s answered to a black hole: probes served in \
         {waits:?}, kv-query answered in {by_kv_query:?}; fds {} -> peak {}, threads {} -> peak {}",
        baseline.fds, peak.fds, baseline.threads, peak.threads
    );
    wait_for_baseline(&s, baseline, "kv-servent after the black-hole flood");
    probe();
    drop(n);
    s.terminate();
    assert!(s.wait_exit().success(), "{}", s.dump());
    let stats = s.wait_stdout_any(|l| l.starts_with("stats "));
    assert!(!stats.contains("dropped=0"), "{stats}");
    eprintln!("kv-servent after the black-hole flood: {stats}");
}

//! The course's wire by hand: exact bytes both ways, kv-query against a servent.

use super::*;

fn read_exact_bytes(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read message bytes");
    buf
}

/// Accepts one answer connection and returns everything sent on it.
fn accept_all(l: &TcpListener) -> Vec<u8> {
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn raw_protocol_bytes_by_hand() {
    let dir = TempDir::new("flood-raw");
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "ssh 22/tcp # SSH\n").unwrap();
    let mut s = servent(&kv, &[], &[]);
    let port = s.port();

    // Two servents' links, greeted with ID port 0: 0x0004 0x0000.
    let mut n1 = RawClient::connect(&s.addr);
    n1.send(&[0x00, 0x04, 0x00, 0x00]);
    s.wait_stdout(|l| l.starts_with("link in "));
    let mut n2 = RawClient::connect(&s.addr);
    n2.send(&[0x00, 0x04, 0x00, 0x00]);
    s.wait_stdout(|l| l.starts_with("link in "));

    // A client listening above 32767 sends ID with its port, then
    // KEYREQ seq 42 "ssh": 0x0005, 0x0000002a, 0x0003, "ssh".
    let answers = high_port_listener();
    let cport = answers.local_addr().unwrap().port();
    assert!(cport > 32767);
    let [hi, lo] = [(cport >> 8) as u8, (cport & 0xff) as u8];
    let mut client = RawClient::connect(&s.addr);
    client.send(&[0x00, 0x04, hi, lo]);
    client.send(&[
        0x00, 0x05, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x03, b's', b's', b'h',
    ]);

    // The servent answers on a new connection: RESP seq 42, 12 bytes, no ID.
    let got = accept_all(&answers);
    assert_eq!(
        got,
        b"\x00\x09\x00\x00\x00\x2a\x00\x0c22/tcp # SSH".to_vec(),
        "{}",
        s.dump()
    );

    // Both links get KEYFLOOD ttl 3, seq 42, origin 127.0.0.1:cport, "ssh".
    let flood = [
        0x00, 0x07, 0x00, 0x03, 0x00, 0x00, 0x00, 0x2a, 127, 0, 0, 1, hi, lo, 0x00, 0x03, b's',
        b's', b'h',
    ];
    assert_eq!(read_exact_bytes(&mut n1.stream, flood.len()), flood);
    assert_eq!(read_exact_bytes(&mut n2.stream, flood.len()), flood);

    // TOPOFLOOD from n1: ttl 2, seq 7, origin 127.0.0.1:cport, info
    // "10.9.8.7:6000" (13 bytes).
    let mut topo = vec![
        0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x07, 127, 0, 0, 1, hi, lo, 0x00, 0x0d,
    ];
    topo.extend_from_slice(b"10.9.8.7:6000");
    n1.send(&topo);
    // The servent appends its own address and answers the client with it ...
    let path = format!("10.9.8.7:6000 127.0.0.1:{port}");
    let mut expect = vec![0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0x00, path.len() as u8];
    expect.extend_from_slice(path.as_bytes());
    assert_eq!(accept_all(&answers), expect);
    // ... and passes it on with ttl 1 to n2 only.
    let mut fwd = vec![0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07];
    fwd.extend_from_slice(&[127, 0, 0, 1, hi, lo, 0x00, path.len() as u8]);
    fwd.extend_from_slice(path.as_bytes());
    assert_eq!(read_exact_bytes(&mut n2.stream, fwd.len()), fwd);

    // The same flood again is a duplicate: dropped, not forwarded.
    n2.send(&topo);
    s.wait_stdout(|l| l.starts_with("duplicate 127.0.0.1:") && l.contains(" seq 7 "));
    // n1 got nothing after all this: the next thing it reads is our probe
    // flood (seq 8), forwarded by the servent from n2.
    let mut probe = topo.clone();
    probe[7] = 0x08;
    n2.send(&probe);
    let got = read_exact_bytes(&mut n1.stream, 8);
    assert_eq!(got, [0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08]);
}

#[test]
fn answer_id_names_the_answer_by_the_servents_listening_address() {
    let dir = TempDir::new("flood-answer-id");
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "ssh 22/tcp # SSH\n").unwrap();
    let s = servent(&kv, &[], &["--answer-id"]);
    let port = s.port();

    // By hand: ID with the servent's listening port, then the RESP.
    let answers = high_port_listener();
    let cport = answers.local_addr().unwrap().port();
    let [hi, lo] = cport.to_be_bytes();
    let mut client = RawClient::connect(&s.addr);
    client.send(&[0x00, 0x04, hi, lo]);
    client.send(&[
        0x00, 0x05, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x03, b's', b's', b'h',
    ]);
    let [p0, p1] = port.to_be_bytes();
    let mut expect = vec![0x00, 0x04, p0, p1];
    expect.extend_from_slice(b"\x00\x09\x00\x00\x00\x2a\x00\x0c22/tcp # SSH");
    assert_eq!(accept_all(&answers), expect, "{}", s.dump());

    // kv-query names the answer by that address, not the source port.
    let q = Query::start(&s.addr, "?ssh");
    let lines = q.finish_after(1);
    assert_eq!(
        value_set(&lines),
        set(&[&format!("22/tcp # SSH 127.0.0.1:{port}")]),
        "{}",
        s.dump()
    );
}

#[test]
fn kv_query_speaks_the_protocol_to_a_servent() {
    // A stand-in servent written with raw bytes.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let q = Query::start(&addr, "?  some key");
    let (mut link, _) = fake.accept().unwrap();
    link.set_read_timeout(Some(DEADLINE)).unwrap();
    let id = read_exact_bytes(&mut link, 4);
    assert_eq!(id[..2], [0x00, 0x04]);
    let cport = u16::from_be_bytes([id[2], id[3]]);
    assert_ne!(cport, 0);
    // KEYREQ seq S (random), "some key" (8 bytes).
    let got = read_exact_bytes(&mut link, 16);
    assert_eq!(got[..2], [0x00, 0x05]);
    let seq: [u8; 4] = got[2..6].try_into().unwrap();
    assert_eq!(&got[6..], b"\x00\x08some key");
    let [s0, s1, s2, s3] = seq;

    // An answer with the wrong seq is reported and ignored.
    let [w0, w1, w2, w3] = u32::from_be_bytes(seq).wrapping_add(5).to_be_bytes();
    let mut c = TcpStream::connect(("127.0.0.1", cport)).unwrap();
    c.write_all(&[0x00, 0x09, w0, w1, w2, w3, 0x00, 0x01, b'x'])
        .unwrap();
    drop(c);
    q.p.wait_stderr(|l| l.contains("unexpected message from 127.0.0.1:"));
    // An ID first is accepted, then the answer.
    let mut c = TcpStream::connect(("127.0.0.1", cport)).unwrap();
    let from = c.local_addr().unwrap();
    c.write_all(&[0x00, 0x04, 0x00, 0x00]).unwrap();
    c.write_all(&[0x00, 0x09, s0, s1, s2, s3, 0x00, 0x03, b'v', b' ', b'1'])
        .unwrap();
    drop(c);
    // And an answer on the link itself.
    link.write_all(&[0x00, 0x09, s0, s1, s2, s3, 0x00, 0x01, b'w'])
        .unwrap();

    let lines = q.finish_after(2);
    assert_eq!(
        value_set(&lines),
        set(&[&format!("v 1 {from}"), &format!("w {addr}")]),
    );
}

/// A stand-in servent for one kv-query: reads its ID and KEYREQ, then
/// calls `lie(link, answer port, seq)`.
fn lying_servent(lie: impl FnOnce(TcpStream, u16, u32) + Send + 'static) -> String {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut link, _) = fake.accept().unwrap();
        link.set_read_timeout(Some(DEADLINE)).unwrap();
        let id = read_exact_bytes(&mut link, 4);
        let cport = u16::from_be_bytes([id[2], id[3]]);
        let head = read_exact_bytes(&mut link, 8);
        let seq = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
        let klen = u16::from_be_bytes([head[6], head[7]]);
        read_exact_bytes(&mut link, klen.into());
        lie(link, cport, seq);
    });
    addr
}

#[test]
fn kv_query_facing_lying_servents_keeps_to_its_own_answers_and_stops_a_flood() {
    // Garbage on answer connections, answers to another seq (a blind
    // spoofer cannot guess the random one), then the real answer.
    let addr = lying_servent(|link, cport, seq| {
        for _ in 0..50 {
            let mut c = TcpStream::connect(("127.0.0.1", cport)).unwrap();
            let _ = c.write_all(&[0xff; 64]);
        }
        for wrong in 1..50u32 {
            let mut c = TcpStream::connect(("127.0.0.1", cport)).unwrap();
            let _ = c.write_all(&resp_bytes(seq.wrapping_add(wrong), "spoofed"));
        }
        let mut c = TcpStream::connect(("127.0.0.1", cport)).unwrap();
        c.write_all(&resp_bytes(seq, "real")).unwrap();
        drop(c);
        // Keeps the link open until kv-query is done.
        let mut link = link;
        let _ = link.read(&mut [0; 1]);
    });
    let out = cmd(bin!("kv-query"))
        .args(["--wait", "2", &addr, "?k"])
        .run()
        .ok()
        .stderr_has("bad message from 127.0.0.1:");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(lines[0].starts_with("real 127.0.0.1:"), "{}", out.stdout);
    // Diagnostics are throttled, not one line per bad message.
    assert!(out.stderr.lines().count() < 40, "{}", out.stderr);

    // A flood of answers to the right seq would hold the wait open for
    // ever: stopped, naming the flooder.
    let addr = lying_servent(|mut link, _, seq| {
        let one = resp_bytes(seq, "again");
        let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        while link.write_all(&many).is_ok() {}
    });
    cmd(bin!("kv-query"))
        .args(["--wait", "5", &addr, "?k"])
        .run()
        .code(2)
        .stderr_has(&format!(
            "answers to one query, the last from {addr}: a flood; giving up"
        ));
}

//! Transfers: redirects, uploads, big files, the digest after the body, interrupted and resumed downloads, never overwriting.

use super::*;

#[test]
fn download_redirects_and_reports_missing_names() {
    let dir = TempDir::new("dht-redirect");
    let (ra, rb) = (dir.sub("a"), dir.sub("b"));
    let index = start_index();
    let a = start_superd(&index, &ra);
    let b = start_superd(&index, &rb);
    let ring = ring_of(&[&a, &b]);

    // A file only B has, which B is responsible for: asking A redirects.
    let name = name_owned_by(&ring, &b.addr, "doc");
    fs::write(rb.join(&name), b"held by b\n").unwrap();
    let (ah, ap) = host_port(&a);
    let out = dir.path().join("out.txt");
    let run = cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name, "-o"])
        .arg(&out)
        .run()
        .ok()
        .stderr_has(&format!(
            "{name} not found at {}, redirecting to {}",
            a.addr, b.addr
        ));
    assert_eq!(fs::read(&out).unwrap(), b"held by b\n", "{}", run.dump());

    // Default destination is the current folder; `-o -` is stdout.
    let cwd = dir.sub("cwd");
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name])
        .cwd(&cwd)
        .run()
        .ok();
    assert_eq!(fs::read(cwd.join(&name)).unwrap(), b"held by b\n");
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name, "-o", "-"])
        .run()
        .ok()
        .stdout_has("held by b");

    // A pipe (or a device such as /dev/null) is written into, not replaced.
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name, "-o"])
        .arg(&fifo)
        .run()
        .ok();
    assert_eq!(reader.join().unwrap(), b"held by b\n");
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    // A name nobody has, whichever supernode is responsible for it.
    for missing in [
        name_owned_by(&ring, &a.addr, "missing"),
        name_owned_by(&ring, &b.addr, "missing"),
    ] {
        cmd(bin!("p2p-get"))
            .args([&ah, &ap, &missing])
            .cwd(&cwd)
            .run()
            .code(1)
            .stderr_has(&format!("{missing} is not available in the network"));
        assert!(!cwd.join(&missing).exists());
    }

    // A bad name is refused locally; a dead supernode is a clear error.
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, "../x"])
        .run()
        .code(2)
        .stderr_has("invalid file name");
    let (_, out) = run_against_dead_port(|port| {
        cmd(bin!("p2p-get"))
            .args(["127.0.0.1", &port.to_string(), "x"])
            .run()
    });
    out.code(2).stderr_has("connection refused");
}

#[test]
fn duplicate_upload_is_refused_and_nothing_is_overwritten() {
    let (dir, repo, _index, s) = lone_superd("dht-dup");
    let local = dir.path().join("notes.txt");
    fs::write(&local, b"first version\n").unwrap();
    put(&s, &local).ok();
    assert_eq!(
        fs::read(repo.join("notes.txt")).unwrap(),
        b"first version\n"
    );
    s.wait_stdout_any(|l| l.starts_with("receiving notes.txt from 127.0.0.1:"));

    fs::write(&local, b"second version, longer\n").unwrap();
    put(&s, &local)
        .code(1)
        .stderr_has(&format!("notes.txt already exists at {}", s.addr));
    assert_eq!(
        fs::read(repo.join("notes.txt")).unwrap(),
        b"first version\n"
    );
    assert_eq!(ls(&s), ["notes.txt"]);
    let (h, port) = host_port(&s);
    let json = cmd(bin!("p2p-ls")).args([&h, &port, "--json"]).run().ok();
    assert_eq!(json.stdout.trim(), "[\"notes.txt\"]");
}

#[test]
fn hundred_megabyte_transfer_keeps_its_hash() {
    let (dir, repo, _index, s) = lone_superd("dht-big");
    let (h, port) = host_port(&s);
    let local = dir.path().join("big.bin");
    write_random_file(&local, 100 << 20, 7);
    let (want, len) = hash_file(&local).unwrap();
    assert_eq!(len, 100 << 20);
    put(&s, &local).ok();
    assert_eq!(hash_file(&repo.join("big.bin")).unwrap(), (want, len));
    let out = dir.path().join("back.bin");
    cmd(bin!("p2p-get"))
        .args([&h, &port, "big.bin", "-o"])
        .arg(&out)
        .run()
        .ok();
    assert_eq!(hash_file(&out).unwrap(), (want, len));
}

/// A supernode stand-in for one download: after the handshake and the
/// request, `serve` answers on the connection as it likes.
fn fake_supernode(serve: impl FnOnce(&mut Conn) + Send + 'static) -> String {
    fake_supernode_on(TcpListener::bind("127.0.0.1:0").unwrap(), serve)
}

/// As `fake_supernode`, on a listener already bound.
fn fake_supernode_on(
    listener: TcpListener,
    serve: impl FnOnce(&mut Conn) + Send + 'static,
) -> String {
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut conn = Conn::new(stream).unwrap();
        if !conn.server_handshake(SUPER_PROTOCOL).unwrap_or(false) {
            return;
        }
        let Ok(Some(_)) = conn.recv::<SuperRequestOf<String>>() else {
            return;
        };
        serve(&mut conn);
    });
    addr
}

/// A supernode stand-in for one download: it answers `File` for `body`,
/// sends the first `cut` bytes, then holds the connection open until the
/// returned sender is dropped (or, with `hold` false, closes it at once).
fn cutting_supernode(body: Vec<u8>, cut: usize, hold: bool) -> (String, mpsc::Sender<()>) {
    let (release, held) = mpsc::channel::<()>();
    let addr = fake_supernode(move |conn| {
        let _ = conn.queue(&SuperResponse::File {
            size: body.len() as u64,
        });
        let _ = conn.writer().write_all(&body[..cut]);
        let _ = conn.flush();
        if hold {
            // Until the test is done with it.
            let _ = held.recv_timeout(DEADLINE);
        }
    });
    (addr, release)
}

/// A supernode stand-in that sends all of `body` and then `after` (the
/// digest, or something else) in place of the digest trailer.
fn trailing_supernode(body: Vec<u8>, after: SuperResponse) -> String {
    fake_supernode(move |conn| {
        let _ = conn.queue(&SuperResponse::File {
            size: body.len() as u64,
        });
        let _ = conn.writer().write_all(&body);
        let _ = conn.send(&after);
    })
}

#[test]
fn the_digest_after_the_body_decides_whether_a_download_is_kept() {
    let dir = TempDir::new("dht-trailer");
    let work = dir.sub("work");
    let body = pseudo_random_bytes((2 << 20) + 77, 9);

    // The right BLAKE3 digest (computed here, not by our supernode): kept.
    let addr = trailing_supernode(
        body.clone(),
        SuperResponse::Sent {
            digest: FileDigest::of(&body),
        },
    );
    cmd(bin!("p2p-get"))
        .args([&addr, "f.bin", "-v"])
        .cwd(&work)
        .run()
        .ok()
        .stderr_has(&format!("f.bin: BLAKE3 {} verified", FileDigest::of(&body)));
    assert!(fs::read(work.join("f.bin")).unwrap() == body);
    fs::remove_file(work.join("f.bin")).unwrap();

    // A wrong digest, to a file or to standard output: refused, nothing left.
    for out in [None, Some("-")] {
        let addr = trailing_supernode(
            body.clone(),
            SuperResponse::Sent {
                digest: FileDigest::of(b"something else"),
            },
        );
        let mut args = vec![addr.as_str(), "f.bin"];
        if let Some(o) = out {
            args.extend(["-o", o]);
        }
        cmd(bin!("p2p-get"))
            .args(&args)
            .cwd(&work)
            .run()
            .code(2)
            .stderr_has("BLAKE3 mismatch");
        assert!(names_in(&work).is_empty(), "{:?}", names_in(&work));
    }

    // The supernode saying the file changed while it was sent: an error
    // naming it, nothing left; closing instead of sending the digest: the
    // bytes stay for a resume, unless asked otherwise.
    let addr = trailing_supernode(
        body.clone(),
        SuperResponse::Error {
            message: "reading f.bin: f.bin changed while being hashed".into(),
        },
    );
    cmd(bin!("p2p-get"))
        .args([&addr, "f.bin"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has(&format!("getting f.bin from {addr}"))
        .stderr_has("changed while being hashed");
    assert!(names_in(&work).is_empty());
    let addr = fake_supernode(move |conn| {
        let _ = conn.queue(&SuperResponse::File {
            size: body.len() as u64,
        });
        let _ = conn.writer().write_all(&body);
        let _ = conn.flush();
    });
    cmd(bin!("p2p-get"))
        .args([&addr, "f.bin", "--no-keep-partial"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("connection closed by peer");
    assert!(names_in(&work).is_empty());
}

#[test]
fn ctrl_c_or_sigterm_during_p2p_get_keeps_the_partial_file_and_says_how_to_resume() {
    let body = pseudo_random_bytes(4 << 20, 11);
    for (signal, keep) in [("INT", true), ("TERM", true), ("INT", false)] {
        let dir = TempDir::new("dht-interrupt");
        let (addr, release) = cutting_supernode(body.clone(), 1 << 20, true);
        let out = dir.path().join("big.bin");
        let mut get = cmd(bin!("p2p-get"))
            .args([&addr, "big.bin", "-o"])
            .arg(&out)
            .args((!keep).then_some("--no-keep-partial"))
            .start();
        let partial = dir.path().join(".big.bin.part");
        wait_until(
            "the partial file to fill",
            || (fs::metadata(&partial).ok()?.len() >= 1 << 20).then_some(()),
            || get.dump(),
        );
        if signal == "INT" {
            get.interrupt();
        } else {
            get.terminate();
        }
        let status = get.wait_exit();
        assert_eq!(status.code(), Some(130), "{}", get.dump());
        let left = names_in(dir.path());
        if keep {
            assert_eq!(left, [".big.bin.part"], "{}", get.dump());
            let said = get.stderr_lines().join("\n");
            let resume = format!(
                "resume with: p2p-get -c {addr} big.bin -o {}",
                out.display()
            );
            assert!(
                said.contains(&format!("interrupted; kept {} bytes of big.bin", 1 << 20))
                    && said.contains(&resume),
                "SIG{signal}: {}",
                get.dump()
            );
        } else {
            assert!(left.is_empty(), "SIG{signal} left {left:?}\n{}", get.dump());
        }
        drop(release);
    }
}

#[test]
fn continue_after_a_cut_transfer_gives_an_identical_file() {
    let dir = TempDir::new("dht-continue");
    let repo = dir.sub("repo");
    let body = pseudo_random_bytes(3 << 20, 5);
    fs::write(repo.join("big.bin"), &body).unwrap();
    let work = dir.sub("work");

    // A cut transfer with --no-keep-partial leaves nothing.
    let (addr, _r) = cutting_supernode(body.clone(), (1 << 20) + 12_345, false);
    cmd(bin!("p2p-get"))
        .args([&addr, "big.bin", "--no-keep-partial"])
        .cwd(&work)
        .run()
        .code(2);
    assert!(names_in(&work).is_empty());

    // Without it, what arrived stays for --continue, and the command that
    // resumes it is given.
    let (addr, _r) = cutting_supernode(body.clone(), (1 << 20) + 12_345, false);
    cmd(bin!("p2p-get"))
        .args([&addr, "big.bin"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has(&format!("getting big.bin from {addr}"))
        .stderr_has("partial download kept in .big.bin.part")
        .stderr_has(&format!("resume it with: p2p-get -c {addr} big.bin"));
    let kept = fs::read(work.join(".big.bin.part")).unwrap();
    assert!(!kept.is_empty() && kept.len() < body.len());
    assert_eq!(kept[..], body[..kept.len()]);

    let index = start_index();
    let s = start_superd(&index, &repo);
    cmd(bin!("p2p-get"))
        .args([&s.addr, "big.bin", "--continue", "-v"])
        .cwd(&work)
        .run()
        .ok()
        .stderr_has(&format!("resuming big.bin after byte {}", kept.len()))
        .stderr_has(&format!(
            "big.bin: BLAKE3 {} verified",
            FileDigest::of(&body)
        ));
    assert!(fs::read(work.join("big.bin")).unwrap() == body);
    assert_eq!(names_in(&work), ["big.bin"]);

    // A partial file that does not match is caught by the whole-file hash
    // and removed; a plain run then succeeds.
    fs::write(work.join(".other.bin.part"), b"not the start of it").unwrap();
    fs::write(repo.join("other.bin"), &body[..100_000]).unwrap();
    cmd(bin!("p2p-get"))
        .args([&s.addr, "other.bin", "-c"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("BLAKE3 mismatch");
    assert_eq!(names_in(&work), ["big.bin"]);
    // --continue without a partial file is a plain download.
    cmd(bin!("p2p-get"))
        .args([&s.addr, "other.bin", "-c"])
        .cwd(&work)
        .run()
        .ok();
    assert!(fs::read(work.join("other.bin")).unwrap() == body[..100_000]);
}

#[test]
fn p2p_get_never_overwrites_without_force_and_names_local_paths() {
    let dir = TempDir::new("dht-clobber");
    let repo = dir.sub("repo");
    fs::write(repo.join("x.txt"), b"remote\n").unwrap();
    let index = start_index();
    let s = start_superd(&index, &repo);
    let work = dir.sub("work");
    fs::write(work.join("x.txt"), b"mine\n").unwrap();
    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt"])
        .cwd(&work)
        .run()
        .code(1)
        .stderr_has("p2p-get: x.txt: already exists (use --force to replace it)");
    assert_eq!(fs::read(work.join("x.txt")).unwrap(), b"mine\n");
    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt", "--force"])
        .cwd(&work)
        .run()
        .ok();
    assert_eq!(fs::read(work.join("x.txt")).unwrap(), b"remote\n");
    assert_eq!(names_in(&work), ["x.txt"]);
    // A folder as the destination: NAME goes into it.
    let into = dir.sub("into");
    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt", "-o"])
        .arg(&into)
        .run()
        .ok();
    assert_eq!(fs::read(into.join("x.txt")).unwrap(), b"remote\n");

    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt", "-o", "nodir/x.txt"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("p2p-get: writing nodir/x.txt: no such file or directory");
    cmd(bin!("p2p-put"))
        .args([&s.addr, "nodir/y.txt"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("p2p-put: reading nodir/y.txt: no such file or directory");
}

/// A supernode stand-in that redirects one download to `to`.
fn redirecting_supernode(listener: TcpListener, to: String) -> String {
    fake_supernode_on(listener, move |conn| {
        let _ = conn.send(&SuperResponse::Redirect { addr: to });
    })
}

#[test]
fn p2p_get_facing_lying_supernodes_fails_clearly_naming_them_and_leaves_nothing() {
    let dir = TempDir::new("dht-liars");
    let work = dir.sub("work");
    let get = |addr: &str, extra: &[&str]| {
        cmd(bin!("p2p-get"))
            .args([addr, "f.bin", "--timeout", "2"])
            .args(extra)
            .cwd(&work)
            .run()
    };

    // Two supernodes redirecting to each other: said after the round.
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (a_addr, b_addr) = (
        a.local_addr().unwrap().to_string(),
        b.local_addr().unwrap().to_string(),
    );
    redirecting_supernode(a, b_addr.clone());
    redirecting_supernode(b, a_addr.clone());
    get(&a_addr, &[])
        .code(2)
        .stderr_has(&format!("getting f.bin from {b_addr}"))
        .stderr_has(&format!(
            "redirected back to {a_addr}, which was already asked"
        ));
    assert!(names_in(&work).is_empty());

    // A chain of redirects longer than any ring needs: given up.
    let listeners: Vec<TcpListener> = (0..7)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    for (i, l) in listeners.into_iter().enumerate().take(6) {
        redirecting_supernode(l, addrs[i + 1].clone());
    }
    get(&addrs[0], &[])
        .code(2)
        .stderr_has("redirects; giving up");

    // A redirect to an address that accepts and then says nothing: the
    // timeout, naming it.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap().to_string();
    let to_hole =
        redirecting_supernode(TcpListener::bind("127.0.0.1:0").unwrap(), hole_addr.clone());
    get(&to_hole, &[])
        .code(2)
        .stderr_has(&format!("getting f.bin from {hole_addr}"));
    drop(hole);
    assert!(names_in(&work).is_empty());

    // A size no disk holds: refused before a byte is written.
    let huge = fake_supernode(|conn| {
        let _ = conn.send(&SuperResponse::File { size: 1 << 60 });
        let _ = conn.writer().write_all(&[0; 4096]);
        let _ = conn.flush();
    });
    get(&huge, &[])
        .code(2)
        .stderr_has("No space left on device");
    assert!(names_in(&work).is_empty());

    // A body that goes on past its size: what follows is no digest.
    let endless = fake_supernode(|conn| {
        let _ = conn.send(&SuperResponse::File { size: 1000 });
        let junk = vec![0xa5u8; 64 * 1024];
        while conn.writer().write_all(&junk).is_ok() && conn.flush().is_ok() {}
    });
    get(&endless, &[])
        .code(2)
        .stderr_has(&format!("getting f.bin from {endless}"));
    assert!(names_in(&work).is_empty());

    // A body, then no digest ever: the timeout. A cut transfer keeps its
    // partial file for --continue (whose whole-file digest decides),
    // unless asked not to.
    let (silent, release) = cutting_supernode(vec![7; 5000], 5000, true);
    get(&silent, &[])
        .code(2)
        .stderr_has(&format!("getting f.bin from {silent}"))
        .stderr_has("partial download kept in .f.bin.part");
    drop(release);
    assert_eq!(names_in(&work), [".f.bin.part"]);
    fs::remove_file(work.join(".f.bin.part")).unwrap();
    let (silent, release) = cutting_supernode(vec![7; 5000], 5000, true);
    get(&silent, &["--no-keep-partial"]).code(2);
    drop(release);
    assert!(names_in(&work).is_empty());

    // A size larger than what follows, then the close.
    let (short, _release) = cutting_supernode(vec![7; 5000], 100, false);
    get(&short, &["--no-keep-partial"])
        .code(2)
        .stderr_has(&format!("getting f.bin from {short}"));
    assert!(names_in(&work).is_empty());
}

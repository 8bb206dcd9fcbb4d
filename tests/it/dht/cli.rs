//! The command lines: help, version, clear errors, address forms, escaping, quiet and verbose.

use super::*;

#[test]
fn programs_have_help_and_version_and_clear_errors() {
    for b in [
        bin!("p2p-index"),
        bin!("p2p-superd"),
        bin!("p2p-ls"),
        bin!("p2p-get"),
        bin!("p2p-put"),
    ] {
        cmd(b)
            .arg("--help")
            .run()
            .ok()
            .stdout_has("Usage")
            .stdout_has("Example:")
            .stdout_has("--quiet")
            .stdout_has("--verbose");
        cmd(b).arg("--version").run().ok().stdout_has("0.1.0");
    }
    // The defaults: where the daemons listen, what the supernode shares.
    cmd(bin!("p2p-index"))
        .arg("--help")
        .run()
        .stdout_has("0.0.0.0:6110");
    cmd(bin!("p2p-superd"))
        .arg("--help")
        .run()
        .stdout_has("[default: localhost:6110]")
        .stdout_has("(0.0.0.0)")
        .stdout_has("Hidden");
    let dir = TempDir::new("dht-errors");
    let (port, out) = run_against_dead_port(|port| {
        cmd(bin!("p2p-superd"))
            .arg(dir.path())
            .args(["--index", &format!("127.0.0.1:{port}")])
            .args(["--listen", "127.0.0.1:0"])
            .run()
    });
    let dead = format!("127.0.0.1:{port}");
    out.code(2).stderr_has(&format!(
        "p2p-superd: connecting to index {dead}: connection refused"
    ));
    cmd(bin!("p2p-superd"))
        .arg(dir.path())
        .args(["--index", &dead, "--heartbeat", "11"])
        .run()
        .code(2)
        .stderr_has("--heartbeat must be at most 10 seconds");
    cmd(bin!("p2p-superd"))
        .arg(dir.path().join("nope"))
        .args(["--index", &dead])
        .run()
        .code(2)
        .stderr_has("repository");
}

#[test]
fn clients_take_host_colon_port_or_host_and_port() {
    let (dir, _repo, _index, s) = lone_superd("dht-addr");
    let (h, p) = host_port(&s);
    let work = dir.sub("work");
    fs::write(work.join("one.txt"), b"1").unwrap();
    fs::write(work.join("two.txt"), b"2").unwrap();
    cmd(bin!("p2p-put"))
        .args([&s.addr, "one.txt"])
        .cwd(&work)
        .run()
        .ok();
    cmd(bin!("p2p-put"))
        .args([&h, &p, "two.txt"])
        .cwd(&work)
        .run()
        .ok();
    for args in [vec![s.addr.clone()], vec![h.clone(), p.clone()]] {
        let out = cmd(bin!("p2p-ls")).args(&args).run().ok();
        assert_eq!(out.stdout_lines(), ["one.txt", "two.txt"]);
    }
    let get = dir.sub("get");
    cmd(bin!("p2p-get"))
        .args([&s.addr, "one.txt"])
        .cwd(&get)
        .run()
        .ok();
    cmd(bin!("p2p-get"))
        .args([&h, &p, "two.txt"])
        .cwd(&get)
        .run()
        .ok();
    assert_eq!(names_in(&get), ["one.txt", "two.txt"]);
    cmd(bin!("p2p-ls"))
        .arg(format!("{h}:port"))
        .run()
        .code(2)
        .stderr_has(&format!("\"port\" is not a port number in \"{h}:port\""));
    cmd(bin!("p2p-ls"))
        .args([&h, "port"])
        .run()
        .code(2)
        .stderr_has("is not a port number");
    // A missing port is said as such, by every client.
    let missing = format!("missing port in \"{h}\" (expected HOST:PORT)");
    cmd(bin!("p2p-ls"))
        .arg(&h)
        .run()
        .code(2)
        .stderr_has(&format!("p2p-ls: {missing}"));
    cmd(bin!("p2p-get"))
        .args([&h, "one.txt"])
        .run()
        .code(2)
        .stderr_has(&format!("p2p-get: {missing}"));
    cmd(bin!("p2p-put"))
        .args([&h, "one.txt"])
        .run()
        .code(2)
        .stderr_has(&format!("p2p-put: {missing}"));
}

#[test]
fn p2p_ls_escapes_control_characters_and_json_stays_exact() {
    let dir = TempDir::new("dht-escape");
    let repo = dir.sub("repo");
    for n in ["a\nb", "x y", "tab\there", "plain.txt"] {
        fs::write(repo.join(n), n).unwrap();
    }
    let index = start_index();
    let s = start_superd(&index, &repo);
    let out = cmd(bin!("p2p-ls")).arg(&s.addr).run().ok();
    assert_eq!(
        out.stdout_lines(),
        ["'a'$'\\n''b'", "plain.txt", "'tab'$'\\t''here'", "x y"],
        "{}",
        out.dump()
    );
    let json = cmd(bin!("p2p-ls")).args([&s.addr, "--json"]).run().ok();
    assert_eq!(
        json.stdout.trim(),
        r#"["a\nb","plain.txt","tab\there","x y"]"#
    );
}

#[test]
fn quiet_and_verbose_mean_the_same_in_every_dht_program() {
    let dir = TempDir::new("dht-verbosity");
    let (ra, rb) = (dir.sub("a"), dir.sub("b"));
    let index = cmd(bin!("p2p-index"))
        .args(["--listen", "127.0.0.1:0", "-v"])
        .daemon();
    let a = start_superd(&index, &ra);
    let mut quiet = cmd(bin!("p2p-superd"))
        .arg(&rb)
        .args(["--index", &index.addr, "--listen", "127.0.0.1:0", "-q"])
        .args(["--sync-interval", SYNC])
        .daemon();
    let ring = ring_of(&[&a, &quiet]);
    let name = name_owned_by(&ring, &quiet.addr, "q");
    fs::write(ra.join(&name), b"q").unwrap();
    wait_until(
        "the file on the quiet supernode",
        || rb.join(&name).exists().then_some(()),
        || dump_all(&[&index, &a, &quiet]),
    );
    // Asked about by A's synchronizer: the verbose index says so.
    index.wait_stdout_any(|l| l.contains(&format!("{name} -> {}", quiet.addr)));

    // Asking A for a file only the quiet one has redirects there: said
    // normally, not with -q; -v tells each step.
    let only_there = name_owned_by(&ring, &quiet.addr, "r");
    fs::write(rb.join(&only_there), b"r").unwrap();
    let get = |flag: Option<&str>| {
        cmd(bin!("p2p-get"))
            .args([&a.addr, &only_there, "-o", "-"])
            .args(flag)
            .run()
            .ok()
            .stdout_has("r")
    };
    let normal = get(None);
    assert_eq!(normal.stderr.lines().count(), 1, "{}", normal.dump());
    assert!(normal.stderr.contains("redirecting"), "{}", normal.dump());
    let quiet_get = get(Some("-q"));
    assert_eq!(quiet_get.stderr, "", "{}", quiet_get.dump());
    let verbose = get(Some("--verbose"))
        .stderr_has(&format!("asking {} for {only_there}", a.addr))
        .stderr_has(&format!(
            "{only_there}: BLAKE3 {} verified",
            FileDigest::of(b"r")
        ));
    assert!(verbose.stderr.lines().count() > 3, "{}", verbose.dump());

    // A quiet daemon prints its readiness line and nothing else.
    quiet.terminate();
    assert!(quiet.wait_exit().success(), "{}", quiet.dump());
    assert_eq!(quiet.stdout_lines().len(), 1, "{}", quiet.dump());
    // Errors still show when quiet.
    cmd(bin!("p2p-get"))
        .args([&a.addr, "nowhere.txt", "-q"])
        .cwd(dir.path())
        .run()
        .code(1)
        .stderr_has("nowhere.txt is not available");
}

/// Runs `line` (a shell command) with a terminal for its stdin, stdout and
/// stderr, as a person would; `None` (said on stderr) when there is no
/// script(1) here.
fn on_a_terminal(line: &str, cwd: &Path) -> Option<Output> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no script(1) to give p2p-get and p2p-put a terminal");
        return None;
    }
    Some(
        cmd("script")
            .args(["-qec", &format!("TERM=xterm {line}"), "/dev/null"])
            .cwd(cwd)
            .run(),
    )
}

#[test]
fn a_transfer_ends_with_one_line_on_a_terminal_and_none_with_q_or_off_it() {
    let dir = TempDir::new("dht-done");
    let repo = dir.sub("repo");
    fs::write(repo.join("notes.txt"), vec![b'n'; 3000]).unwrap();
    let index = start_index();
    let s = start_superd(&index, &repo);
    let work = dir.sub("work");
    fs::write(work.join("up.txt"), b"up").unwrap();
    let get = format!("{} {} notes.txt", bin!("p2p-get"), s.addr);
    let Some(out) = on_a_terminal(&get, &work) else {
        return;
    };
    let out = out.ok();
    let done = format!(
        "got notes.txt (2.93 KiB) from {} into notes.txt, BLAKE3 verified, in ",
        s.addr
    );
    assert!(out.stdout.contains(&done), "{}", out.dump());
    let put = format!("{} {} up.txt", bin!("p2p-put"), s.addr);
    let out = on_a_terminal(&put, &work).unwrap().ok();
    let done = format!("put up.txt (2 B) at {}, BLAKE3 verified there, in ", s.addr);
    assert!(out.stdout.contains(&done), "{}", out.dump());

    // -q: nothing on the terminal but what was asked for.
    let get_q = format!("{} -q --force {} notes.txt", bin!("p2p-get"), s.addr);
    let out = on_a_terminal(&get_q, &work).unwrap().ok();
    assert!(!out.stdout.contains("got notes.txt"), "{}", out.dump());
    // Off a terminal the exit status says it; stderr stays empty.
    let out = cmd(bin!("p2p-get"))
        .args(["--force", &s.addr, "notes.txt"])
        .cwd(&work)
        .run()
        .ok();
    assert_eq!(out.stderr, "", "{}", out.dump());
}

#[test]
fn a_reader_that_stops_early_is_success() {
    // `p2p-get -o - | head`: the reader closes the pipe; p2p-get exits 0
    // and says nothing, like any tool.
    let dir = TempDir::new("dht-head");
    let repo = dir.sub("repo");
    write_random_file(&repo.join("big.bin"), 4 << 20, 3);
    let index = start_index();
    let s = start_superd(&index, &repo);
    let mut child = std::process::Command::new(bin!("p2p-get"))
        .args(["-o", "-", &s.addr, "big.bin"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(0), "")
    );
}

#[test]
fn with_v_the_clients_print_a_line_per_step_on_stderr() {
    let (dir, _repo, _index, s) = lone_superd("dht-steps");
    let work = dir.sub("work");
    fs::write(work.join("step.txt"), b"steps").unwrap();
    // Each program's -v lines, in order, as the course's client prints
    // its steps: connected, the list's header, transmitting, success.
    let in_order = |out: &Output, steps: &[&str]| {
        let lines: Vec<&str> = out.stderr.lines().collect();
        let mut at = 0;
        for step in steps {
            match lines[at..].iter().position(|l| l.contains(step)) {
                Some(i) => at += i + 1,
                None => panic!("no {step:?} in order\n{}", out.dump()),
            }
        }
    };
    let put = cmd(bin!("p2p-put"))
        .args([&s.addr, "step.txt", "-v"])
        .cwd(&work)
        .run()
        .ok();
    in_order(
        &put,
        &[
            &format!("connected to {}", s.addr),
            "offering step.txt (5 bytes",
            "transmitting step.txt (5 bytes)",
            &format!("step.txt: stored at {} (5 bytes)", s.addr),
        ],
    );
    let ls = cmd(bin!("p2p-ls")).args([&s.addr, "-v"]).run().ok();
    in_order(
        &ls,
        &[
            &format!("connected to {}", s.addr),
            &format!("{}: 1 name", s.addr),
        ],
    );
    assert_eq!(ls.stdout_lines(), ["step.txt"]);
    let get = dir.sub("get");
    let out = cmd(bin!("p2p-get"))
        .args([&s.addr, "step.txt", "-v"])
        .cwd(&get)
        .run()
        .ok();
    in_order(
        &out,
        &[
            &format!("connected to {}", s.addr),
            "receiving step.txt from",
            "step.txt: BLAKE3",
        ],
    );
    // Without -v none of these lines.
    fs::remove_file(get.join("step.txt")).unwrap();
    for out in [
        cmd(bin!("p2p-ls")).arg(&s.addr).run().ok(),
        cmd(bin!("p2p-get"))
            .args([&s.addr, "step.txt"])
            .cwd(&get)
            .run()
            .ok(),
    ] {
        assert!(!out.stderr.contains("connected to"), "{}", out.dump());
    }
}

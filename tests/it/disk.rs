//! A full disk: received files on a small tmpfs (mounted by the test when
//! it runs as root; skipped, saying so, elsewhere). Each receiver fails
//! with `No space left on device` naming the path, leaves no partial
//! file, keeps serving, and succeeds once space is freed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bin;
use crate::harness::*;

/// A tmpfs mounted on a fresh folder, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A `size`-byte tmpfs at `dir`, or `None` (with a SKIPPED line) where
    /// mounting is not allowed.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): the full-disk test");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    /// Gives it `size` bytes (freeing space without touching its files).
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {}", self.0.display());
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every name in `dir`, hidden ones (temporary and partial files) too.
fn all_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Creates `path` and writes zeros to it until the disk is full, in blocks
/// of each size of `blocks` in turn.
fn fill(path: &Path, blocks: &[usize]) {
    use std::io::Write;
    let mut f = fs::File::create(path).unwrap();
    for &size in blocks {
        let block = vec![0u8; size];
        while f.write_all(&block).is_ok() {}
    }
}

/// Asserts that `dir` holds nothing, not even a hidden partial file.
fn assert_empty(dir: &Path) {
    let names = all_names(dir);
    assert!(names.is_empty(), "{names:?}");
}

/// A p2p-superd serving `repo` in the ring of `index`, with `extra`
/// flags, once it has joined.
fn superd(repo: &Path, index: &str, extra: &[&str]) -> Proc {
    let mut p = cmd(bin!("p2p-superd"))
        .arg(repo)
        .args(["--index", index, "--listen", "127.0.0.1:0"])
        .args(extra)
        .daemon();
    p.wait_stdout(|l| l.starts_with("joined the ring as "));
    p
}

/// Peer periods short enough for tests.
const PERIODS: [&str; 4] = ["--ping-interval", "0.2", "--report-interval", "0.5"];

/// A bt-tracker and a seed sharing DIR/src/NAME, `len` bytes from `rng`,
/// with `extra` flags, once it has said its swarm: (tracker, seed, file).
fn seeded(
    dir: &TempDir,
    name: &str,
    len: usize,
    rng: u64,
    extra: &[&str],
) -> (Proc, Proc, PathBuf) {
    let src = dir.sub("src").join(name);
    fs::write(&src, pseudo_random_bytes(len, rng)).unwrap();
    let t = cmd(bin!("bt-tracker"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    let mut seed = cmd(bin!("bt-peer"))
        .arg("share")
        .arg(&src)
        .args(["--tracker", &t.addr, "--listen", "127.0.0.1:0"])
        .args(PERIODS)
        .args(extra)
        .daemon();
    seed.wait_stdout(|l| l.starts_with("swarm "));
    (t, seed, src)
}

/// `bt-peer fetch NAME --exit-when-done` through `tracker` into `out`,
/// not started.
fn fetch_cmd(name: &str, tracker: &str, out: &Path) -> Spawn {
    cmd(bin!("bt-peer"))
        .args(["fetch", name, "--tracker", tracker])
        .args(["--listen", "127.0.0.1:0", "--exit-when-done"])
        .args(PERIODS)
        .arg("--out")
        .arg(out)
}

#[test]
fn dht_uploads_and_downloads_onto_a_full_disk_fail_cleanly_and_succeed_after() {
    let dir = TempDir::new("disk-dht");
    let Some(repo) = Tmpfs::mount(&dir.path().join("repo"), "1m") else {
        return;
    };
    let Some(dest) = Tmpfs::mount(&dir.path().join("dest"), "1m") else {
        return;
    };
    let index = cmd(bin!("p2p-index"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    let s = superd(repo.path(), &index.addr, &[]);
    let small = dir.path().join("small.txt");
    fs::write(&small, b"fits\n").unwrap();
    let big = dir.path().join("big.bin");
    let body = pseudo_random_bytes(3 << 20, 5);
    fs::write(&big, &body).unwrap();
    cmd(bin!("p2p-put")).arg(&s.addr).arg(&small).run().ok();

    // The supernode's disk is full for big.bin: refused, nothing left, and
    // it serves on.
    cmd(bin!("p2p-put"))
        .arg(&s.addr)
        .arg(&big)
        .run()
        .code(2)
        .stderr_has("storing big.bin: No space left on device");
    s.wait_stderr(|l| {
        l.contains("receiving big.bin into ") && l.contains(&repo.path().display().to_string())
    });
    assert_eq!(all_names(repo.path()), ["small.txt"]);
    cmd(bin!("p2p-get"))
        .arg(&s.addr)
        .args(["small.txt", "-o", "-"])
        .run()
        .ok()
        .stdout_has("fits");
    // Space freed: the same upload works.
    repo.resize("8m");
    cmd(bin!("p2p-put")).arg(&s.addr).arg(&big).run().ok();
    assert!(fs::read(repo.path().join("big.bin")).unwrap() == body);

    // The client's disk is full: an error naming the path, no partial file.
    let out = dest.path().join("big.bin");
    let get = || {
        cmd(bin!("p2p-get"))
            .arg(&s.addr)
            .arg("big.bin")
            .arg("-o")
            .arg(&out)
            .run()
    };
    get()
        .code(2)
        .stderr_has(&format!("writing {}", out.display()))
        .stderr_has("No space left on device");
    assert_empty(dest.path());
    dest.resize("8m");
    get().ok();
    assert!(fs::read(&out).unwrap() == body);
}

#[test]
fn a_bt_peer_fetch_onto_a_full_disk_fails_cleanly_and_succeeds_after() {
    let dir = TempDir::new("disk-swarm");
    let Some(out) = Tmpfs::mount(&dir.path().join("out"), "1m") else {
        return;
    };
    let (t, _seed, src) = seeded(&dir, "big.bin", 3 << 20, 8, &[]);
    let fetch = || fetch_cmd("big.bin", &t.addr, out.path()).run();
    fetch()
        .code(2)
        .stderr_has("No space left on device")
        .stderr_has(&out.path().display().to_string());
    assert_empty(out.path());
    out.resize("8m");
    fetch().ok();
    assert!(fs::read(out.path().join("big.bin")).unwrap() == fs::read(&src).unwrap());
}

/// The disk fills during a fetch (another file takes the space after the
/// up-front check passed): the fetch ends with `No space left on device`
/// naming the partial file, blames no peer, and exits 2; the partial file
/// is kept for a resume, which completes once space is freed.
#[test]
fn a_bt_peer_fetch_whose_disk_fills_midway_fails_and_resumes_after() {
    let dir = TempDir::new("disk-swarm-mid");
    let Some(out) = Tmpfs::mount(&dir.path().join("out"), "3m") else {
        return;
    };
    let (t, seed, src) = seeded(
        &dir,
        "mid.bin",
        2 << 20,
        9,
        &["--piece-size", "64K", "--upload-limit", "256K"],
    );
    let fetch = || fetch_cmd("mid.bin", &t.addr, out.path());
    let mut p = fetch().start();
    let partial = wait_until(
        "the partial file",
        || {
            fs::read_dir(out.path())
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".part"))
        },
        || p.dump(),
    );
    // Another file takes every byte left.
    let filler = dir.path().join("out").join("filler");
    fill(&filler, &[64 * 1024]);
    let st = p.wait_exit();
    assert_eq!(st.code(), Some(2), "{}", p.dump());
    let err = p.stderr_lines().join("\n");
    assert!(
        err.contains("No space left on device")
            && err.contains(&format!("writing {}", partial.display()))
            && err.contains("run again with the same --out to resume"),
        "{}",
        p.dump()
    );
    assert!(
        !err.contains(&seed.addr),
        "the seed was blamed\n{}",
        p.dump()
    );
    // Only the partial file (kept for the resume) and the filler.
    let mut names = all_names(out.path());
    names.retain(|n| n != "filler");
    assert_eq!(names.len(), 1, "{names:?}");
    fs::remove_file(&filler).unwrap();
    fetch().run().ok();
    assert!(fs::read(out.path().join("mid.bin")).unwrap() == fs::read(&src).unwrap());
    assert_eq!(all_names(out.path()), ["mid.bin"]);
}

/// A supernode receiving a sync copy from another onto a full disk: the
/// copy is refused with `No space left on device` naming the folder, no
/// partial file is left, the supernode serves on, and the next round's
/// copy lands once space is freed.
#[test]
fn a_supernode_receiving_a_sync_copy_onto_a_full_disk_refuses_it_and_takes_it_after() {
    let dir = TempDir::new("disk-sync");
    let Some(repo_a) = Tmpfs::mount(&dir.path().join("a"), "1m") else {
        return;
    };
    let repo_b = dir.sub("b");
    let index = cmd(bin!("p2p-index"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    let superd = |repo: &Path| superd(repo, &index.addr, &["--sync-interval", "0.2"]);
    let a = superd(repo_a.path());
    // A file B holds that A is responsible for, in the ring of the two.
    let b = superd(&repo_b);
    let mut ring = peerkit::dht::ring::Ring::new();
    ring.add(&a.addr);
    ring.add(&b.addr);
    let name = (0..10_000)
        .map(|i| format!("sync-{i}.bin"))
        .find(|n| ring.owner(n) == Some(a.addr.as_str()))
        .unwrap();
    let body = pseudo_random_bytes(3 << 20, 11);
    fs::write(repo_b.join(&name), &body).unwrap();
    b.wait_stderr(|l| l.contains(&format!("sync: sending {name} to {}", a.addr)));
    a.wait_stderr(|l| {
        l.contains(&format!(
            "receiving {name} into {}",
            repo_a.path().display()
        )) && l.contains("No space left on device")
    });
    assert_empty(repo_a.path());
    // A serves on: an upload that fits is taken.
    let small = dir.path().join("small.txt");
    fs::write(&small, b"fits\n").unwrap();
    cmd(bin!("p2p-put")).arg(&a.addr).arg(&small).run().ok();
    repo_a.resize("8m");
    wait_until(
        "the sync copy on the freed disk",
        || (fs::read(repo_a.path().join(&name)).ok()? == body).then_some(()),
        || format!("{}\n{}", a.dump(), b.dump()),
    );
    let mut names = all_names(repo_a.path());
    names.retain(|n| n != "small.txt");
    assert_eq!(names, [name]);
}

/// One nap-server request (each part followed by a NUL) and its answer.
fn nap_ask(addr: &str, parts: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p.as_bytes());
        bytes.push(0);
    }
    RawClient::connect(addr).send(&bytes).read_to_close()
}

/// The nap-server's state file on a full disk: a change that cannot be
/// saved is refused (its FAIL code) and undone, the error names the state
/// file, no temporary file is left, the server serves on from what it
/// holds, and the same change succeeds once space is freed.
#[test]
fn nap_server_state_on_a_full_disk_refuses_the_change_and_serves_on() {
    const DT: &str = "21/11/2026 10:00:00";
    let dir = TempDir::new("disk-nap");
    let Some(storage) = Tmpfs::mount(&dir.path().join("state"), "1m") else {
        return;
    };
    let s = cmd(bin!("nap-server"))
        .args(["--listen", "127.0.0.1:0", "--storage"])
        .arg(storage.path())
        .daemon();
    assert_eq!(nap_ask(&s.addr, &["REGISTER", DT, "ana"]), b"0\0");
    let filler = storage.path().join("filler");
    // The last partial block too: not one byte is left.
    fill(&filler, &[64 * 1024, 512]);
    let state = storage.path().join("directory.state");
    let refused = nap_ask(&s.addr, &["REGISTER", DT, "bob"]);
    assert_ne!(refused, b"0\0", "{}", s.dump());
    s.wait_stderr(|l| {
        l.contains("No space left on device") && l.contains(&format!("writing {}", state.display()))
    });
    assert_eq!(all_names(storage.path()), ["directory.state", "filler"]);
    // Serving on: ana is known, bob was undone.
    assert_eq!(nap_ask(&s.addr, &["REGISTER", DT, "ana"]), b"1\0");
    fs::remove_file(&filler).unwrap();
    assert_eq!(nap_ask(&s.addr, &["REGISTER", DT, "bob"]), b"0\0");
    assert_eq!(all_names(storage.path()), ["directory.state"]);
}

/// A stand-in directory server: to every request, `answer(op name)`.
fn fake_nap_server(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut op = Vec::new();
                if r.read_until(0, &mut op).is_err() {
                    return;
                }
                op.pop();
                // The rest of the request is not needed.
                let _ = s.write_all(&answer(&String::from_utf8_lossy(&op)));
            });
        }
    });
    port
}

#[test]
fn nap_peer_facing_a_huge_user_list_and_an_endless_file_stays_bounded() {
    use std::io::{Read, Write};
    let dir = TempDir::new("disk-nap");
    // A peer that answers GET_FILE with a file that never ends.
    let endless = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endless_port = endless.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in endless.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let _ = s.read(&mut [0; 512]);
                let _ = s.write_all(b"0\0");
                let junk = vec![0x5au8; 64 * 1024];
                while s.write_all(&junk).is_ok() {}
            });
        }
    });
    let list = format!("0\x001\x00bob\x00127.0.0.1\x00{endless_port}\x00");
    let good = fake_nap_server(move |_| list.clone().into_bytes());
    // A server announcing a million users, then sending them.
    let huge = fake_nap_server(|op| {
        if op != "LIST_USERS" {
            return b"0\0".to_vec();
        }
        let mut v = b"0\x001000000\x00".to_vec();
        for i in 0..1000 {
            v.extend_from_slice(format!("u{i}\x00127.0.0.1\x001\x00").as_bytes());
        }
        v
    });
    let peer = |port: u16, cwd: &Path, input: &str| {
        cmd(bin!("nap-peer"))
            .args(["--server", "127.0.0.1", "--port", &port.to_string()])
            .args(["--listen-ip", "127.0.0.1", "--timeout", "5"])
            .cwd(cwd)
            .stdin(input)
            .run()
    };
    let work = dir.sub("work");
    peer(huge, &work, "LIST_USERS\nQUIT\n")
        .stderr_has(&format!("LIST_USERS: server 127.0.0.1:{huge}"))
        .stderr_has("bad count \"1000000\"");

    let Some(small) = Tmpfs::mount(&dir.path().join("small"), "4m") else {
        return;
    };
    let out = peer(good, small.path(), "GET_FILE bob f.bin f.bin\nQUIT\n")
        .stdout_has("GET_FILE FAIL")
        .stderr_has(&format!("GET_FILE: bob at 127.0.0.1:{endless_port}"))
        .stderr_has("No space left on device");
    assert!(
        all_names(small.path()).is_empty(),
        "{:?}\n{}",
        all_names(small.path()),
        out.stderr
    );
}

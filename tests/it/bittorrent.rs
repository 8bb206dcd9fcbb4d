//! Interoperability of the swarm's BitTorrent wire with real clients on
//! 127.0.0.1: aria2c, Transmission, opentracker, mktorrent, tshark. A test
//! whose tool is missing says SKIPPED (and CI lists it) and passes
//! (scripts/install-deps.sh bittorrent installs them).

use std::cell::RefCell;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bin;
use crate::harness::*;

/// Whether every tool is installed; a visible skip (listed by CI) if not.
fn tools(test: &str, needed: &[&str]) -> bool {
    match needed.iter().find(|t| !have(t)) {
        None => true,
        Some(t) => {
            skip(
                test,
                &format!("{t} is not installed (scripts/install-deps.sh bittorrent)"),
            );
            false
        }
    }
}

/// A port free right now on 127.0.0.1 (for tools that cannot take port 0).
/// Another test may take it before the tool binds it: where the tool
/// cannot be given several, the caller retries with another.
fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different ports free right now on 127.0.0.1.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

/// bt-tracker with its HTTP announce listener; returns it and the URL.
fn bt_tracker() -> (Proc, String) {
    let mut t = cmd(bin!("bt-tracker"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--announce",
            "127.0.0.1:0",
            "--ping-interval",
            "1",
        ])
        .daemon();
    let line = t.wait_stdout(|l| l.starts_with("announce on "));
    let url = line["announce on ".len()..].trim().to_string();
    (t, url)
}

/// opentracker serving `hash` (Debian's build serves whitelisted torrents
/// only) on a free port, and the port. It takes a port number, not port 0:
/// if another test took the port first, it exits, and another is tried.
fn opentracker(dir: &Path, hash: &str) -> (Proc, u16) {
    fs::write(dir.join("whitelist"), format!("{hash}\n")).unwrap();
    fs::write(
        dir.join("opentracker.conf"),
        format!("access.whitelist {}\n", dir.join("whitelist").display()),
    )
    .unwrap();
    let mut tried = String::new();
    for _ in 0..5 {
        let port = free_port();
        let p = cmd("opentracker")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-P",
                &port.to_string(),
            ])
            .args(["-A", "127.0.0.1", "-f"])
            .arg(dir.join("opentracker.conf"))
            .start();
        // Borrowed by both closures below: one polls for its exit.
        let p = RefCell::new(p);
        let up = wait_until(
            "opentracker to listen or exit",
            || {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    Some(true)
                } else {
                    p.borrow_mut().exited().then_some(false)
                }
            },
            || p.borrow().dump(),
        );
        let p = p.into_inner();
        if up {
            return (p, port);
        }
        tried.push_str(&p.dump());
    }
    panic!("opentracker never listened\n{tried}");
}

fn aria2(dir: &Path, extra: &[&str]) -> Spawn {
    cmd("aria2c")
        .arg(format!("--dir={}", dir.display()))
        .args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--bt-require-crypto=false",
            "--disable-ipv6=true",
            "--file-allocation=none",
            "--summary-interval=0",
            "--console-log-level=warn",
            "--check-certificate=false",
        ])
        // Several ports: aria2c binds the first it can, so a port another
        // test took meanwhile is passed over.
        .arg(format!(
            "--listen-port={}",
            free_ports(4)
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))
        .args(extra)
}

fn bt_torrent(path: &Path, out: &Path, tracker: &str, piece: &str) -> String {
    let o = cmd(bin!("bt-peer"))
        .arg("torrent")
        .arg(path)
        .arg("-o")
        .arg(out)
        .args(["--tracker", tracker, "--piece-size", piece])
        .run()
        .ok();
    let hash = o.stdout.trim().to_string();
    assert_eq!(hash.len(), 40, "{}", o.dump());
    hash
}

/// bt-peer seeding `data` with `torrent`, up once its info hash is printed.
fn bt_seed(torrent: &Path, data: &Path, extra: &[&str]) -> Proc {
    let mut p = cmd(bin!("bt-peer"))
        .arg("share")
        .arg(data)
        .arg("--torrent")
        .arg(torrent)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .daemon();
    p.wait_stdout(|l| l.starts_with("seeding "));
    p
}

fn bt_fetch(what: &str, out: &Path, extra: &[&str]) -> Spawn {
    cmd(bin!("bt-peer"))
        .arg("fetch")
        .arg(what)
        .arg("--out")
        .arg(out)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

/// Waits until `copy` holds the bytes of `orig` (random bytes: a copy
/// with a piece missing cannot match; aria2c's control file lingers until
/// its next autosave, so it is no sign).
fn wait_copy(copy: &Path, orig: &Path, who: &Proc) {
    let want = fs::read(orig).unwrap();
    wait_until(
        &format!("{} to be complete", copy.display()),
        || (fs::read(copy).ok()? == want).then_some(()),
        || who.dump(),
    );
}

/// The info hash transmission-show prints for a torrent.
fn transmission_hash(torrent: &Path) -> String {
    let o = Command::new("transmission-show")
        .arg(torrent)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Hash: "))
        .unwrap_or_else(|| panic!("transmission-show: no hash\n{text}"))
        .trim()
        .to_string()
}

#[test]
fn bt_peer_seeds_to_aria2c_and_transmission_through_bt_tracker() {
    if !tools(
        "bt-peer seeds to aria2c and Transmission",
        &["aria2c", "transmission-cli"],
    ) {
        return;
    }
    let d = TempDir::new("bt-seed");
    let file = d.path().join("data.bin");
    write_random_file(&file, 3_000_000, 1);
    let (_t, url) = bt_tracker();
    let torrent = d.path().join("data.torrent");
    bt_torrent(&file, &torrent, &url, "64K");
    let _seed = bt_seed(&torrent, &file, &[]);

    let a = d.sub("aria");
    aria2(&a, &["--seed-time=0"]).arg(&torrent).run().ok();
    same_file(&a.join("data.bin"), &file);

    let tr = d.sub("transmission");
    let cfg = d.sub("transmission-config");
    let p = cmd("transmission-cli")
        .args(["-w"])
        .arg(&tr)
        .arg("-g")
        .arg(&cfg)
        .args(["-p", &free_port().to_string(), "-ep", "-M"])
        .arg(&torrent)
        .start();
    wait_copy(&tr.join("data.bin"), &file, &p);
}

#[test]
fn bt_peer_fetches_from_aria2c_through_opentracker_by_torrent_and_magnet() {
    if !tools(
        "bt-peer fetches from aria2c",
        &["aria2c", "opentracker", "mktorrent"],
    ) {
        return;
    }
    let d = TempDir::new("bt-fetch");
    let seed = d.sub("seed");
    let file = seed.join("movie.bin");
    write_random_file(&file, 2_500_000, 2);
    // The info hash does not depend on the announce URL: opentracker's
    // whitelist is written before its port, and so the URL, is known.
    let hash = bt_torrent(
        &file,
        &d.path().join("unannounced.torrent"),
        "http://127.0.0.1:1/announce",
        "64K",
    );
    let (_ot, port) = opentracker(d.path(), &hash);
    let torrent = d.path().join("movie.torrent");
    let url = format!("http://127.0.0.1:{port}/announce");
    let o = Command::new("mktorrent")
        .args(["-l", "16", "-a", &url, "-o"])
        .arg(&torrent)
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        bt_torrent(&file, &d.path().join("ours.torrent"), &url, "64K"),
        hash
    );
    // Both torrents have the same info dict: the same hash.
    if have("transmission-show") {
        assert_eq!(transmission_hash(&torrent), hash);
    }
    let _aria = aria2(&seed, &["--check-integrity=true", "--seed-ratio=0.0"])
        .arg(&torrent)
        .start();

    let out = d.sub("from-torrent");
    let o = bt_fetch(torrent.to_str().unwrap(), &out, &["--exit-when-done"])
        .run()
        .ok();
    assert!(
        o.stdout.contains(&format!("info hash {hash}")),
        "{}",
        o.dump()
    );
    assert!(o.stdout.contains("A2-"), "no aria2 peer seen\n{}", o.dump());
    same_file(&out.join("movie.bin"), &file);

    let out = d.sub("from-magnet");
    let magnet = format!(
        "magnet:?xt=urn:btih:{hash}&dn=movie.bin&tr={}",
        url.replace(':', "%3A").replace('/', "%2F")
    );
    let o = bt_fetch(&magnet, &out, &["--exit-when-done"]).run().ok();
    assert!(o.stdout.contains("metadata from"), "{}", o.dump());
    same_file(&out.join("movie.bin"), &file);
}

#[test]
fn mixed_swarm_of_bt_peer_and_aria2c_trades_pieces_both_ways() {
    if !tools("mixed swarm", &["aria2c"]) {
        return;
    }
    let d = TempDir::new("bt-mixed");
    let file = d.path().join("big.bin");
    write_random_file(&file, 4_000_000, 3);
    let (_t, url) = bt_tracker();
    let torrent = d.path().join("big.torrent");
    bt_torrent(&file, &torrent, &url, "32K");
    // A slow seeder: the fetchers must trade among themselves.
    let _seed = bt_seed(&torrent, &file, &["--upload-limit", "400K"]);
    let mut ours = Vec::new();
    let mut arias = Vec::new();
    for i in 0..2 {
        let dir = d.sub(&format!("aria{i}"));
        arias.push((
            aria2(&dir, &["--seed-ratio=0.0"]).arg(&torrent).start(),
            dir,
        ));
        let out = d.sub(&format!("peer{i}"));
        ours.push((bt_fetch(torrent.to_str().unwrap(), &out, &[]).start(), out));
    }
    for (p, out) in &mut ours {
        p.wait_stdout(|l| l.starts_with("complete: "));
        same_file(&out.join("big.bin"), &file);
    }
    for (p, dir) in &arias {
        wait_copy(&dir.join("big.bin"), &file, p);
    }
    // Each bt-peer fetcher says, per peer, what it took and gave.
    let (mut from_aria, mut to_aria) = (0u64, 0u64);
    let mut logs = String::new();
    for (p, _) in &mut ours {
        p.terminate();
        p.wait_exit();
        for l in p.stdout_lines() {
            logs.push_str(&l);
            logs.push('\n');
            if l.contains(" A2-") && l.contains(" done: down ") {
                let num = |after: &str| -> u64 {
                    l.split(after)
                        .nth(1)
                        .and_then(|r| r.split(' ').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                };
                from_aria += num("down ");
                to_aria += num("up ");
            }
        }
    }
    eprintln!("bt-peer fetchers: {from_aria} bytes from aria2c, {to_aria} bytes to aria2c");
    assert!(
        from_aria > 0,
        "no piece went from aria2c to bt-peer\n{logs}"
    );
    assert!(to_aria > 0, "no piece went from bt-peer to aria2c\n{logs}");
}

#[test]
fn torrents_agree_across_mktorrent_transmission_show_and_aria2c() {
    if !tools(
        "torrent interop",
        &["aria2c", "mktorrent", "transmission-show"],
    ) {
        return;
    }
    let d = TempDir::new("bt-meta");
    let file = d.path().join("song.bin");
    write_random_file(&file, 1_000_000, 4);
    let (_t, url) = bt_tracker();
    let ours = d.path().join("ours.torrent");
    let hash = bt_torrent(&file, &ours, &url, "256K");
    let theirs = d.path().join("theirs.torrent");
    let o = Command::new("mktorrent")
        .args(["-l", "18", "-a", &url, "-o"])
        .arg(&theirs)
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(transmission_hash(&ours), hash);
    assert_eq!(transmission_hash(&theirs), hash);
    // mktorrent's torrent seeded by bt-peer, fetched by aria2c and bt-peer.
    let _seed = bt_seed(&theirs, &file, &[]);
    let a = d.sub("aria");
    aria2(&a, &["--seed-time=0"]).arg(&ours).run().ok();
    same_file(&a.join("song.bin"), &file);
    let out = d.sub("peer");
    bt_fetch(theirs.to_str().unwrap(), &out, &["--exit-when-done"])
        .run()
        .ok();
    same_file(&out.join("song.bin"), &file);
}

fn make_tree(root: &Path) -> Vec<PathBuf> {
    let files = [
        "a.txt",
        "with space/b c.bin",
        "with space/deeper/nested/d.bin",
        "z",
    ];
    for (i, f) in files.iter().enumerate() {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_random_file(&p, 50_000 * (i as u64 + 1), 10 + i as u64);
    }
    files.iter().map(PathBuf::from).collect()
}

#[test]
fn folder_torrents_go_both_ways() {
    if !tools("folder torrents", &["aria2c", "mktorrent"]) {
        return;
    }
    let d = TempDir::new("bt-folder");
    let src = d.sub("src");
    let tree = src.join("my folder");
    let files = make_tree(&tree);
    let (_t, url) = bt_tracker();

    // bt-peer's folder torrent, seeded by bt-peer, fetched by aria2c.
    let ours = d.path().join("ours.torrent");
    bt_torrent(&tree, &ours, &url, "32K");
    let seed = bt_seed(&ours, &tree, &[]);
    let a = d.sub("aria");
    aria2(&a, &["--seed-time=0"]).arg(&ours).run().ok();
    for f in &files {
        same_file(&a.join("my folder").join(f), &tree.join(f));
    }
    drop(seed);

    // mktorrent's folder torrent, seeded by aria2c, fetched by bt-peer.
    let theirs = d.path().join("theirs.torrent");
    let o = Command::new("mktorrent")
        .args(["-l", "15", "-a", &url, "-o"])
        .arg(&theirs)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let _aria = aria2(&src, &["--check-integrity=true", "--seed-ratio=0.0"])
        .arg(&theirs)
        .start();
    let out = d.sub("peer");
    bt_fetch(theirs.to_str().unwrap(), &out, &["--exit-when-done"])
        .run()
        .ok();
    for f in &files {
        same_file(&out.join("my folder").join(f), &tree.join(f));
    }
    // Nothing else was left in --out.
    let left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("my folder")]);
}

#[test]
fn wireshark_decodes_a_bt_peer_download() {
    if !tools("tshark capture", &["tshark"]) {
        return;
    }
    let d = TempDir::new("bt-tshark");
    let file = d.path().join("cap.bin");
    write_random_file(&file, 300_000, 5);
    let (_t, url) = bt_tracker();
    let torrent = d.path().join("cap.torrent");
    bt_torrent(&file, &torrent, &url, "64K");
    let seed = bt_seed(&torrent, &file, &[]);
    let port = seed.port();
    let pcap = d.path().join("cap.pcapng");
    let mut cap = cmd("tshark")
        .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
        .arg(&pcap)
        .start();
    // dumpcap is capturing once tshark says "Capture started" ("Capturing
    // on" comes before the capture has begun).
    let line = cap.wait_stderr(|l| {
        l.contains("Capture started") || l.contains("ermission") || l.contains("rror")
    });
    if !line.contains("Capture started") {
        skip(
            "tshark capture",
            &format!("tshark cannot capture here: {line}"),
        );
        return;
    }
    let out = d.sub("out");
    bt_fetch(torrent.to_str().unwrap(), &out, &["--exit-when-done"])
        .run()
        .ok();
    same_file(&out.join("cap.bin"), &file);
    cap.interrupt();
    cap.wait_exit();
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-d",
            &format!("tcp.port=={port},bittorrent"),
            "-Y",
            "bittorrent",
        ])
        .args([
            "-T",
            "fields",
            "-e",
            "bittorrent.msg.type",
            "-e",
            "bittorrent.info_hash",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let hash = transmission_like_hash(&torrent);
    assert!(
        text.contains(&hash),
        "no handshake with the info hash decoded\n{text}"
    );
    for (ty, name) in [("5", "bitfield"), ("6", "request"), ("7", "piece")] {
        assert!(
            text.lines()
                .any(|l| l.split(['\t', ',']).next() == Some(ty)),
            "no {name} message decoded\n{text}"
        );
    }
}

/// The info hash (hex) of a torrent, as bt-peer computes it.
fn transmission_like_hash(torrent: &Path) -> String {
    let bytes = fs::read(torrent).unwrap();
    peerkit::swarm::bt::metainfo::Metainfo::parse(&bytes)
        .unwrap()
        .hash
        .to_hex()
}

#[test]
fn hostile_torrents_are_refused_and_nothing_is_written_outside_out() {
    let d = TempDir::new("bt-hostile");
    let out = d.sub("out");
    let pieces = "x".repeat(20);
    let cases = [
        (
            "dotdot",
            format!(
                "d8:announce22:http://127.0.0.1:1/a4:infod5:filesld6:lengthi10e4:pathl2:..4:evileee4:name1:d12:piece lengthi16384e6:pieces20:{pieces}ee"
            ),
        ),
        (
            "absolute",
            format!(
                "d8:announce22:http://127.0.0.1:1/a4:infod5:filesld6:lengthi10e4:pathl8:/tmp/evileee4:name1:d12:piece lengthi16384e6:pieces20:{pieces}ee"
            ),
        ),
        (
            "huge-piece",
            format!(
                "d8:announce22:http://127.0.0.1:1/a4:infod6:lengthi10e4:name1:f12:piece lengthi2147483648e6:pieces20:{pieces}ee"
            ),
        ),
        (
            "length-mismatch",
            format!(
                "d8:announce22:http://127.0.0.1:1/a4:infod6:lengthi99999e4:name1:f12:piece lengthi16384e6:pieces20:{pieces}ee"
            ),
        ),
        ("not-bencode", "<html>not found</html>".to_string()),
    ];
    for (name, body) in cases {
        let t = d.path().join(format!("{name}.torrent"));
        fs::write(&t, body).unwrap();
        let o = bt_fetch(t.to_str().unwrap(), &out, &["--exit-when-done"])
            .run()
            .code(2);
        // The user's own file is at fault, said as such, and it is read
        // before anything listens.
        let want = format!("bt-peer: reading {}: not a valid torrent: ", t.display());
        assert!(o.stderr.starts_with(&want), "{name}: {}", o.dump());
        assert!(
            !o.stderr.contains("malformed message"),
            "{name}: {}",
            o.dump()
        );
        assert!(!o.stdout.contains("listening on"), "{name}: {}", o.dump());
    }
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    assert!(!d.path().join("evil").exists());
}

/// A fake peer that announces itself to bt-tracker, takes the fetcher's
/// connection and sends `bad` after the handshake.
fn hostile_peer(bad: &[u8], want: &str) {
    let d = TempDir::new("bt-hostile-peer");
    let file = d.path().join("f.bin");
    write_random_file(&file, 100_000, 6);
    let (_t, url) = bt_tracker();
    let torrent = d.path().join("f.torrent");
    let hash = transmission_like_hash(&{
        bt_torrent(&file, &torrent, &url, "16K");
        torrent.clone()
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let raw_hash: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let esc = |b: &[u8]| b.iter().map(|b| format!("%{b:02X}")).collect::<String>();
    let (host, path) = url.trim_start_matches("http://").split_once('/').unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path}?info_hash={}&peer_id={}&port={port}&left=0&compact=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        esc(&raw_hash),
        esc(b"-XX0000-hostilepeer!")
    )
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let out = d.sub("out");
    let mut f = bt_fetch(torrent.to_str().unwrap(), &out, &[]).start();
    let (mut c, _) = listener.accept().unwrap();
    let mut hs = [0u8; 68];
    c.read_exact(&mut hs).unwrap();
    let mut mine = hs;
    mine[48..68].copy_from_slice(b"-XX0000-hostilepeer!");
    c.write_all(&mine).unwrap();
    c.write_all(bad).unwrap();
    let line = f.wait_stdout(|l| l.contains("-XX0000") && l.contains(" done: "));
    assert!(line.contains(want), "{line}\n{}", f.dump());
    // It keeps running (and wrote nothing but its partial file).
    assert!(!out.join("f.bin").exists());
    f.terminate();
    f.wait_exit();
}

#[test]
fn hostile_peers_lose_their_connection_only() {
    // A message length of 2^32 - 1.
    hostile_peer(&[0xff, 0xff, 0xff, 0xff], "exceeds");
    // 100 KB in 16 KiB pieces: 7 pieces, so the last bit of the byte is spare.
    hostile_peer(&[0, 0, 0, 2, 5, 0xff], "spare bits");
}

#[test]
fn a_torrent_fetch_stopped_before_complete_exits_130() {
    // No seed: the fetch can only wait, so the signal always comes first.
    let dir = TempDir::new("bt-interrupt");
    let data = dir.sub("data").join("i.bin");
    write_random_file(&data, 256 << 10, 21);
    let (_t, url) = bt_tracker();
    let torrent = dir.path().join("i.torrent");
    bt_torrent(&data, &torrent, &url, "16K");
    for how in ["Ctrl-C", "SIGTERM"] {
        for mode in [&["--exit-when-done"][..], &[][..]] {
            let out = dir.sub(&format!("out-{}-{}", how, mode.len()));
            let mut p = bt_fetch(torrent.to_str().unwrap(), &out, mode).daemon();
            p.wait_stdout(|l| l.starts_with("fetching "));
            if how == "Ctrl-C" {
                p.interrupt();
            } else {
                p.terminate();
            }
            let status = p.wait_exit();
            assert_eq!(status.code(), Some(130), "{how} {mode:?}\n{}", p.dump());
            p.wait_stderr(|l| l.contains("interrupted: stopped with 0 of 16 pieces"));
        }
    }
}

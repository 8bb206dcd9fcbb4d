//! The C client library of the course's `dirops.h`, one per rdird design
//! (scripts/build-dirops.sh): the course's `rls.c` and `rls_mix.c`, linked
//! unchanged against each, list through rdird in the matching mode exactly
//! as `rls` does; handles that are not open are refused without a crash;
//! across a server restart mid-listing the stateless and RPC libraries go
//! on from their cookie and the stateful one reports the lost handle.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bin;
use crate::harness::{Output, Proc, TempDir, cmd, have, skip};

const DESIGNS: [&str; 3] = ["stateful", "stateless", "rpc"];

/// A transient RPC program number of this run's own.
fn prog() -> u32 {
    0x4000_0000 | ((std::process::id() & 0xffff) << 8) | 0xd0
}

fn rdird(design: &str, root: &Path, listen: &str) -> Proc {
    cmd(bin!("rdird"))
        .args(["--mode", design, "--listen", listen, "-q"])
        .arg("--root")
        .arg(root)
        .args(["--prog", &prog().to_string()])
        .daemon()
}

/// SIGTERM (an RPC server leaves rpcbind) and reap.
fn stop(mut d: Proc) {
    d.terminate();
    d.wait_exit();
}

/// Runs a C program with the course's environment ($SERVIDOR, $PUERTO;
/// no $PUERTO when `port` is None).
fn c_run(program: &Path, port: Option<u16>, args: &[&str]) -> Output {
    let mut c = cmd("/usr/bin/env");
    c = match port {
        Some(p) => c.arg(format!("PUERTO={p}")),
        None => c.args(["-u", "PUERTO"]),
    };
    c.arg("SERVIDOR=127.0.0.1")
        .arg(format!("RDIR_PROG={}", prog()))
        .arg(program)
        .args(args)
        .run()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// What the C library is built from, or why it cannot be.
fn designs_to_build() -> Result<Vec<&'static str>, String> {
    if !have("cc") {
        return Err("no C compiler (scripts/install-deps.sh rpc installs gcc)".into());
    }
    let rpc = have("rpcgen") && Path::new("/usr/include/tirpc/rpc/rpc.h").exists();
    if !rpc {
        skip(
            "dirops rpc library",
            "rpcgen or libtirpc-dev missing (scripts/install-deps.sh rpc)",
        );
    }
    Ok(DESIGNS.into_iter().filter(|d| rpc || *d != "rpc").collect())
}

fn build(out: &Path, designs: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = cmd("bash")
        .arg(root.join("scripts/build-dirops.sh"))
        .arg(out)
        .args(designs)
        .run();
    assert!(built.status.success(), "build-dirops.sh\n{}", built.dump());
    let header = fs::read_to_string(out.join("include/dirops.h")).unwrap();
    for proto in [
        "RDIR *r_opendir(char *dirname);",
        "char *r_readdir(RDIR *dir);",
        "int r_closedir(RDIR *dir);",
    ] {
        assert!(header.contains(proto), "dirops.h lacks {proto}\n{header}");
    }
    // The test's own client, linked like any course program.
    for d in designs {
        let mut c = Command::new("cc");
        c.arg("-I")
            .arg(out.join("include"))
            .arg(root.join("testdata/dirops/check.c"))
            .arg(out.join(d).join("libdirops.a"));
        if *d == "rpc" {
            c.arg("-ltirpc");
        }
        let o = c.arg("-o").arg(out.join(d).join("check")).output().unwrap();
        assert!(
            o.status.success(),
            "cc check.c ({d}): {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    out.to_path_buf()
}

#[test]
fn the_course_rls_lists_through_every_design_with_dirops_h() {
    let designs = match designs_to_build() {
        Ok(d) => d,
        Err(why) => return skip("the dirops C library test", &why),
    };
    let t = TempDir::new("dirops");
    let out = build(&t.sub("out"), &designs);
    let root = t.sub("root");
    for (dir, n) in [("docs", 5), ("many", 300)] {
        let p = t.sub(&format!("root/{dir}"));
        for i in 0..n {
            fs::write(p.join(format!("{dir} entry {i:03}")), b"").unwrap();
        }
    }
    fs::write(root.join("a file"), b"").unwrap();
    for design in &designs {
        let lib = out.join(design);
        let d = rdird(design, &root, "127.0.0.1:0");
        let port = d.port();
        // The course's rls, against the matching library.
        let c = c_run(&lib.join("rls"), Some(port), &["many"]).ok();
        let ours = cmd(bin!("rls"))
            .args(["--mode", design, "--server", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--prog", &prog().to_string()])
            .arg("many")
            .run()
            .ok();
        assert_eq!(c.stdout, ours.stdout, "{design}: rls.c and rls agree");
        assert_eq!(c.stdout_lines().len(), 302, "{design}: {}", c.dump());
        // Two handles at once keep their own places.
        let mix = c_run(&lib.join("rls_mix"), Some(port), &["docs", "many"]).ok();
        let lines = mix.stdout_lines();
        assert_eq!(lines.len(), 7 + 302, "{design}: {}", mix.dump());
        assert!(lines[0].starts_with("docs: ") && lines[1].starts_with("many: "));
        // Refusals: a missing folder, a file, outside the root.
        for (what, why) in [
            ("missing", "No such file or directory"),
            ("a file", "Not a directory"),
            ("..", ""),
        ] {
            let o = c_run(&lib.join("rls"), Some(port), &[what]).code(1);
            assert!(o.stderr.contains(why), "{design} {what}: {}", o.dump());
        }
        // Handles that are not open: refused with EBADF, no crash.
        c_run(&lib.join("check"), Some(port), &["bogus", "docs"])
            .ok()
            .stdout_has("bogus handles: refused")
            .stderr_has("is not an open directory");
        // The server is still serving.
        c_run(&lib.join("rls"), Some(port), &["docs"]).ok();
        // No server: a clear error, at once.
        stop(d);
        let o = c_run(&lib.join("rls"), Some(port), &["docs"]).code(1);
        assert!(o.stderr.contains("dirops: "), "{design}: {}", o.dump());
    }
}

#[test]
fn a_server_restart_mid_listing_goes_on_or_reports_the_lost_handle() {
    let designs = match designs_to_build() {
        Ok(d) => d,
        Err(why) => return skip("the dirops restart test", &why),
    };
    let t = TempDir::new("dirops-restart");
    let out = build(&t.sub("out"), &designs);
    let root = t.sub("root");
    let many = t.sub("root/many");
    for i in 0..200 {
        fs::write(many.join(format!("n{i:03}")), b"").unwrap();
    }
    let mut want: Vec<String> = fs::read_dir(&many)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    want.extend([".".to_string(), "..".to_string()]);
    let want = sorted(want);
    for design in &designs {
        let d = rdird(design, &root, "127.0.0.1:0");
        let listen = d.addr.clone();
        let port = d.port();
        let mut c = cmd("/usr/bin/env")
            .arg(format!("PUERTO={port}"))
            .args(["SERVIDOR=127.0.0.1", "RDIR_BATCH=10"])
            .arg(format!("RDIR_PROG={}", prog()))
            .arg(out.join(design).join("check"))
            .args(["pause", "many", "50"])
            .stdin_open()
            .start();
        c.wait_stdout(|l| l == "paused");
        stop(d);
        let d2 = rdird(design, &root, &listen);
        c.send_stdin(b"go\n");
        let status = c.wait_exit();
        let lines: Vec<String> = c
            .stdout_lines()
            .into_iter()
            .filter(|l| l != "paused")
            .collect();
        let err = c.stderr_lines().join("\n");
        if *design == "stateful" {
            // The server's memory of the listing died with it.
            assert_eq!(status.code(), Some(1), "{}", c.dump());
            assert_eq!(
                lines.last().map(String::as_str),
                Some("listing failed after 50 entries: Bad file descriptor"),
                "{}",
                c.dump()
            );
            assert!(err.contains("bad handle"), "{}", c.dump());
        } else {
            // The client kept the cookie: every entry exactly once.
            assert!(status.success(), "{}", c.dump());
            assert_eq!(lines.last().map(String::as_str), Some("listed 202 entries"));
            assert_eq!(sorted(lines[..lines.len() - 1].to_vec()), want, "{design}");
            assert!(err.contains("going on from cookie"), "{}", c.dump());
        }
        stop(d2);
    }
}

#[test]
fn the_rpc_library_finds_the_server_through_rpcbind_without_puerto() {
    if !(have("cc") && have("rpcgen") && Path::new("/usr/include/tirpc/rpc/rpc.h").exists()) {
        return skip(
            "dirops rpc through rpcbind",
            "cc, rpcgen or libtirpc-dev missing (scripts/install-deps.sh rpc)",
        );
    }
    if peerkit::oncrpc::portmap::Portmapper::local().is_err() {
        return skip(
            "dirops rpc through rpcbind",
            "no rpcbind running (scripts/install-deps.sh rpc starts one)",
        );
    }
    let t = TempDir::new("dirops-rpcbind");
    let out = build(&t.sub("out"), &["rpc"]);
    let root = t.sub("root");
    fs::write(t.sub("root/docs").join("apuntes.txt"), b"").unwrap();
    let d = rdird("rpc", &root, "127.0.0.1:0");
    let o = c_run(&out.join("rpc/rls"), None, &["docs"]).ok();
    assert_eq!(
        sorted(o.stdout_lines()),
        [".", "..", "apuntes.txt"],
        "{}",
        o.dump()
    );
    stop(d);
}

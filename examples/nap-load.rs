//! Load generator for `scripts/bench-nap.sh`: CLIENTS threads, each with its
//! own user, send PUBLISH / LIST_CONTENT / DELETE requests to a nap-server
//! (one connection per request, as the protocol has it) for SECONDS, and
//! the totals are printed as one line:
//! `clients=N ops=M ops_per_sec=R p50_ms=A p99_ms=B errors=E`.
//!
//! `cargo run --release --example nap-load -- HOST:PORT CLIENTS SECONDS [TAG]`

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use peerkit::nap::wire::{self, Body, Field, Request};

fn field(s: &str) -> Field {
    // The bench's own short names always fit.
    Field::new(s).unwrap_or_default()
}

/// One request on its own connection; the result code.
fn call(addr: &str, req: &Request) -> Option<u8> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_nodelay(true).ok()?;
    (&s).write_all(&req.encode()).ok()?;
    let answer = wire::read_answer(&mut BufReader::new(&s), req.op()).ok()?;
    Some(answer.code())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: nap-load HOST:PORT CLIENTS SECONDS [TAG]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let clients: usize = args[2].parse().unwrap_or(1);
    let secs: f64 = args[3].parse().unwrap_or(3.0);
    let tag = args.get(4).cloned().unwrap_or_else(|| "load".into());
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let addr = addr.clone();
            let user = field(&format!("{tag}-{i}"));
            std::thread::spawn(move || {
                let req = |body| Request {
                    datetime: Some(wire::DateTime::now()),
                    user: user.clone(),
                    body,
                };
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let _ = call(&addr, &req(Body::Register));
                let connect = Body::Connect {
                    ip: field(""),
                    port: field("9"),
                };
                if call(&addr, &req(connect)) != Some(0) {
                    errors += 1;
                }
                let mut n = 0u64;
                while Instant::now() < until {
                    let file = field(&format!("f{n}"));
                    let body = match n % 3 {
                        0 => Body::Publish {
                            file,
                            description: field("bench"),
                        },
                        1 => Body::ListContent {
                            remote: user.clone(),
                        },
                        _ => Body::Delete {
                            file: field(&format!("f{}", n - 2)),
                        },
                    };
                    let r = req(body);
                    let t = Instant::now();
                    let code = call(&addr, &r);
                    lat.push(t.elapsed());
                    if code != Some(0) {
                        errors += 1;
                    }
                    n += 1;
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        if let Ok((lat, e)) = t.join() {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "clients={clients} ops={} ops_per_sec={:.0} p50_ms={:.2} p99_ms={:.2} errors={errors}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}

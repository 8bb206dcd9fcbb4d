//! The Napster-like server's answers as nap-peer reads them (codes in
//! either format, user and file listings): what reads back re-encodes and
//! reads the same in both formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::nap::{Answer, Op, ResultFormat, wire::read_answer};
use peerkit_fuzz::{bounded, pick};

const OPS: [Op; 3] = [Op::ListUsers, Op::ListContent, Op::Register];

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, OPS.len() as u8) else {
        return;
    };
    let op = OPS[which as usize];
    let mut r = rest;
    if let Ok(answer) = bounded(data, || read_answer(&mut r, op)) {
        // In the byte format a code that is an ASCII digit would read as
        // the start of a text code: such codes exist only in text.
        let byte_ok = !matches!(answer, Answer::Code(c) if c.is_ascii_digit());
        for format in [ResultFormat::Text, ResultFormat::Byte] {
            if format == ResultFormat::Byte && !byte_ok {
                continue;
            }
            let bytes = answer.encode(format);
            let again = read_answer(&mut &bytes[..], op).expect("an encoded answer reads");
            assert_eq!(answer, again);
        }
    }
});

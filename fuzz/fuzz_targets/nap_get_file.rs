//! A peer's GET_FILE request: the name, the file name and the optional
//! date-time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::nap::DateTime;
use peerkit::nap::wire::{GetFile, read_get_datetime, read_get_file_name};
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let Ok(Ok(file)) = bounded(data, || read_get_file_name(&mut r)) else {
        return;
    };
    let Ok(dt) = read_get_datetime(&mut r) else {
        return;
    };
    let datetime = dt.and_then(|f| DateTime::parse(f.as_str()));
    let get = GetFile { file, datetime };
    let bytes = get.encode();
    let mut again = &bytes[..];
    let file = read_get_file_name(&mut again).unwrap().unwrap();
    let dt = read_get_datetime(&mut again).unwrap();
    assert_eq!(file, get.file);
    assert_eq!(dt.and_then(|f| DateTime::parse(f.as_str())), get.datetime);
});

//! What every fuzz target shares: a counting allocator that bounds the
//! memory one parse may take by the size of its input, and round-trip
//! checks for our postcard frames.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed straight to the system allocator; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if new > layout.size() {
            let live = LIVE.fetch_add(new - layout.size(), Ordering::Relaxed) + new - layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most a parse may hold at once beyond what it held before: the
/// largest buffer a reader sets up front (a 1 MiB frame or record, which
/// our readers check against their limit before allocating) plus a
/// generous multiple of the input.
pub fn allowance(input: usize) -> usize {
    (2 << 20) + 64 * input
}

/// Runs `f` and fails if it held more than [`allowance`] for `input`.
pub fn bounded<R>(input: &[u8], f: impl FnOnce() -> R) -> R {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        used <= allowance(input.len()),
        "{used} bytes held for a {}-byte input",
        input.len()
    );
    r
}

/// A frame payload decoded as `T`: if it decodes, it encodes, and that
/// decodes to the same value.
pub fn frame_roundtrip<T>(payload: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let v = bounded(payload, || peerkit::frame::decode::<T>(payload)).ok()?;
    let frame = peerkit::frame::encode(&v).expect("a decoded message encodes");
    let again: T = peerkit::frame::decode(&frame[4..]).expect("an encoded message decodes");
    assert_eq!(v, again);
    Some(v)
}

/// The first byte as a choice among `n`, and the rest.
pub fn pick(data: &[u8], n: u8) -> Option<(u8, &[u8])> {
    let (first, rest) = data.split_first()?;
    Some((first % n, rest))
}

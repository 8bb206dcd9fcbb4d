//! Protocol events for the live views: each is one JSON object (`t`, the
//! time in milliseconds since the epoch, `kind`, then its own fields) handed
//! to every subscriber through a bounded queue. The data path never waits
//! for a view: with no subscriber, publishing costs one atomic load and the
//! event is not even built; a subscriber that does not keep up loses
//! events, which are counted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Events waiting for one subscriber before new ones are dropped for it.
pub(crate) const QUEUE: usize = 1024;

/// Subscribers at once; more are refused.
pub(crate) const MAX_SUBSCRIBERS: usize = 16;

/// Now, in milliseconds since the epoch: the `t` of every event and of
/// every record a view keeps.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One event as it goes out: a JSON object, shared by every subscriber.
pub(crate) type Event = Arc<str>;

/// The events of one daemon.
#[derive(Debug, Default)]
pub(crate) struct Events {
    /// Each subscriber's queue, and a token that dies with its receiver.
    subscribers: Mutex<Vec<(SyncSender<Event>, Weak<()>)>>,
    /// How many subscribers there are, read without the lock.
    active: AtomicUsize,
    dropped: AtomicU64,
    published: AtomicU64,
}

impl Events {
    pub(crate) fn new() -> Arc<Events> {
        Arc::new(Events::default())
    }

    /// Whether anyone is listening (so building an event is worth it).
    pub(crate) fn wanted(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Hands the event `kind` with the fields `fields` makes to every
    /// subscriber; `fields` is only called if there is one. A value that
    /// came from a peer goes in as a JSON string, never as markup.
    pub(crate) fn publish(&self, kind: &str, fields: impl FnOnce(&mut Map<String, Value>)) {
        if !self.wanted() {
            return;
        }
        let mut map = Map::new();
        map.insert("t".into(), now_ms().into());
        map.insert("kind".into(), kind.into());
        fields(&mut map);
        let event: Event = Value::Object(map).to_string().into();
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|(tx, _)| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        self.active.store(subs.len(), Ordering::Relaxed);
    }

    /// A new subscriber, or `None` when [`MAX_SUBSCRIBERS`] listen.
    /// Dropping it unsubscribes.
    pub(crate) fn subscribe(&self) -> Option<Subscription> {
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|(_, alive)| alive.strong_count() > 0);
        if subs.len() >= MAX_SUBSCRIBERS {
            self.active.store(subs.len(), Ordering::Relaxed);
            return None;
        }
        let (tx, rx) = sync_channel(QUEUE);
        let alive = Arc::new(());
        subs.push((tx, Arc::downgrade(&alive)));
        self.active.store(subs.len(), Ordering::Relaxed);
        Some(Subscription { rx, _alive: alive })
    }

    /// Events published while someone listened.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events a subscriber lost because its queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One subscriber's queue of events.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub rx: Receiver<Event>,
    /// Dropped with the subscription, which frees its place.
    _alive: Arc<()>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_without_a_subscriber() {
        let e = Events::new();
        e.publish("joined", |_| panic!("built for nobody"));
        assert_eq!(e.published(), 0);
    }

    #[test]
    fn every_subscriber_gets_each_event_as_json() {
        let e = Events::new();
        let a = e.subscribe().unwrap();
        let b = e.subscribe().unwrap();
        e.publish("joined", |m| {
            m.insert("addr".into(), "<img src=x>\"".into());
        });
        for sub in [&a, &b] {
            let got: Value = serde_json::from_str(&sub.rx.try_recv().unwrap()).unwrap();
            assert_eq!(got["kind"], "joined");
            assert_eq!(got["addr"], "<img src=x>\"");
            assert!(got["t"].as_u64().unwrap() > 0);
        }
    }

    #[test]
    fn a_slow_subscriber_loses_events_and_a_gone_one_its_place() {
        let e = Events::new();
        let slow = e.subscribe().unwrap();
        for i in 0..QUEUE + 10 {
            e.publish("tick", |m| {
                m.insert("i".into(), i.into());
            });
        }
        assert_eq!(e.dropped(), 10);
        assert_eq!(slow.rx.try_iter().count(), QUEUE);
        drop(slow);
        let mut held = Vec::new();
        for _ in 0..MAX_SUBSCRIBERS {
            held.push(e.subscribe().expect("a place"));
        }
        assert!(e.subscribe().is_none(), "capped");
        held.pop();
        assert!(e.subscribe().is_some(), "a place freed");
    }
}

//! `nap-server`'s live view: every registered user, connected or not, its
//! address and published files, and the operations in the order they were
//! carried out (what `nap-log` prints), with their result codes.

use std::sync::{Arc, PoisonError};

use serde_json::{Map, Value, json};

use super::server::{OpRecord, Shared};
use super::wire::Refusal;
use crate::view::Site;

impl OpRecord {
    /// The record's fields, as `state.json` and the `operation` event give them.
    pub(super) fn fill(&self, m: &mut Map<String, Value>) {
        m.insert("t".into(), self.t.into());
        m.insert("user".into(), self.user.clone().into());
        m.insert("op".into(), self.op.name().into());
        m.insert("subject".into(), self.subject.clone().into());
        m.insert("code".into(), self.code.into());
        m.insert(
            "result".into(),
            match Refusal::from_code(self.op, self.code) {
                None => "ok".to_string(),
                Some(r) => format!("{r:?}"),
            }
            .into(),
        );
        m.insert("from".into(), self.from.to_string().into());
    }
}

/// The directory's page and state.
pub(super) struct ServerSite {
    shared: Arc<Shared>,
}

impl ServerSite {
    pub(super) fn new(shared: Arc<Shared>) -> ServerSite {
        ServerSite { shared }
    }
}

impl Site for ServerSite {
    fn page(&self) -> &'static str {
        include_str!("server.html")
    }

    fn state(&self) -> Value {
        let users: Vec<Value> = self
            .shared
            .store
            .snapshot()
            .into_iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "connected": u.connected.is_some(),
                    "ip": u.connected.as_ref().map(|c| c.0.clone()),
                    "port": u.connected.as_ref().map(|c| c.1),
                    "files": u.files.iter().map(|(f, d)| json!({"name": f, "description": d})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let operations: Vec<Value> = self
            .shared
            .watch
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|r| {
                let mut m = Map::new();
                r.fill(&mut m);
                Value::Object(m)
            })
            .collect();
        json!({
            "system": "nap-server",
            "users": users,
            "operations": operations,
        })
    }
}

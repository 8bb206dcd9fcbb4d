//! The directory's state: the registered users, where each is connected,
//! and what each has published; the operations on it with the course's
//! result codes; and its file under `--storage`.
//!
//! The file (`directory.state`) is a magic line, then the whole state as one
//! postcard value (every string length-prefixed, so no name can be mistaken
//! for a separator). It is rewritten after every change through a temporary
//! file that is synced and renamed over the old one, so it is always either
//! the old state or the new one. On start every user is marked disconnected
//! (their listeners are gone with the old run) and the file rewritten.
//!
//! **Saving, grouped.** Each change gets a version number. A worker that
//! changed the state then takes the file lock: if the version on disk is
//! already at least its own, a newer state holding its change was written
//! meanwhile and it answers at once; otherwise it writes the *current*
//! state, which holds every change made while the previous write ran. So
//! a change is answered only once it is on disk, the state lock is never
//! held during file I/O (readers never wait for a sync), and N changes
//! arriving during one sync cost one more sync, not N.
//!
//! **Locks.** `Disk::written` (the file lock) is taken before `Store::state`,
//! never the other way round; neither is held during socket I/O.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::wire::{Answer, Body, Field, FileEntry, Refusal, Request, UserEntry};
use crate::error::{Error, Result, ResultExt};
use crate::transfer::TempFile;

/// The state file's name inside `--storage`.
pub(crate) const STATE_FILE: &str = "directory.state";

/// The state file's first bytes: what it is and its format version.
const MAGIC: &[u8] = b"peerkit nap directory v1\n";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct User {
    /// The listening address given at CONNECT, while connected.
    connected: Option<(String, u16)>,
    /// Published file name → description.
    files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    users: BTreeMap<String, User>,
}

/// The state and the version of its latest change.
#[derive(Debug, Default)]
struct Versioned {
    state: State,
    version: u64,
}

/// The state file and the version it holds (also the file lock).
#[derive(Debug)]
struct Disk {
    path: PathBuf,
    written: Mutex<u64>,
}

/// A registered user as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    pub name: String,
    /// The listening address given at CONNECT, while connected.
    pub connected: Option<(String, u16)>,
    /// Published files: name and description.
    pub files: Vec<(String, String)>,
}

/// The directory: its state and, with `--storage`, its file.
#[derive(Debug)]
pub(crate) struct Store {
    state: Mutex<Versioned>,
    disk: Option<Disk>,
}

impl Store {
    /// A directory kept in memory only.
    pub(crate) fn in_memory() -> Store {
        Store {
            state: Mutex::new(Versioned::default()),
            disk: None,
        }
    }

    /// Opens (or starts) the directory kept in `dir`, marks every user
    /// disconnected and writes it back.
    pub(crate) fn open(dir: &Path) -> Result<Store> {
        fs::create_dir_all(dir).doing(|| format!("creating {}", dir.display()))?;
        let file = dir.join(STATE_FILE);
        let mut state = match fs::read(&file) {
            Ok(bytes) => {
                decode(&bytes).map_err(|e| e.doing(format!("reading {}", file.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(Error::from(e).doing(format!("reading {}", file.display()))),
        };
        for u in state.users.values_mut() {
            u.connected = None;
        }
        write_state(&file, &state)?;
        Ok(Store {
            state: Mutex::new(Versioned { state, version: 0 }),
            disk: Some(Disk {
                path: file,
                written: Mutex::new(0),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Versioned> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of registered users.
    pub(crate) fn users(&self) -> usize {
        self.lock().state.users.len()
    }

    /// Number of users connected now.
    pub(crate) fn connected(&self) -> usize {
        let g = self.lock();
        g.state
            .users
            .values()
            .filter(|u| u.connected.is_some())
            .count()
    }

    /// Every registered user, by name: where it is connected, if it is,
    /// and what it published (name, description).
    pub(crate) fn snapshot(&self) -> Vec<UserInfo> {
        let g = self.lock();
        g.state
            .users
            .iter()
            .map(|(name, u)| UserInfo {
                name: name.clone(),
                connected: u.connected.clone(),
                files: u
                    .files
                    .iter()
                    .map(|(f, d)| (f.clone(), d.clone()))
                    .collect(),
            })
            .collect()
    }

    /// Carries out one request from a connection coming from `from`, and
    /// gives the answer. A change that cannot be saved is undone and
    /// answered with the operation's FAIL code.
    pub(crate) fn apply(&self, req: &Request, from: IpAddr) -> Answer {
        let op = req.op();
        let name = req.user.as_str();
        let (answer, version, before, after) = {
            let mut g = self.lock();
            let before = g.state.users.get(name).cloned();
            let answer = match execute(&mut g.state, req, from) {
                Ok(a) => a,
                Err(refusal) => return Answer::Code(refusal.code(op)),
            };
            let after = g.state.users.get(name).cloned();
            if after == before || self.disk.is_none() {
                return answer;
            }
            g.version += 1;
            (answer, g.version, before, after)
        };
        match self.save(version) {
            Ok(()) => answer,
            Err(e) => {
                crate::diag!("{op} from {name}: not saved, refused: {e}");
                // Undo, unless someone changed this user since.
                let mut g = self.lock();
                if g.state.users.get(name) == after.as_ref() {
                    match before {
                        Some(u) => g.state.users.insert(name.to_string(), u),
                        None => g.state.users.remove(name),
                    };
                }
                Answer::Code(op.fail_code())
            }
        }
    }

    /// Makes sure the file holds version `version` or a later one.
    fn save(&self, version: u64) -> Result<()> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let mut written = disk.written.lock().unwrap_or_else(PoisonError::into_inner);
        if *written >= version {
            return Ok(());
        }
        let (bytes, latest) = {
            let g = self.lock();
            (encode(&g.state)?, g.version)
        };
        write_bytes(&disk.path, &bytes)?;
        *written = latest;
        Ok(())
    }
}

/// The operation's effect on `state`: its answer, or the refusal, which
/// changes nothing.
fn execute(state: &mut State, req: &Request, from: IpAddr) -> std::result::Result<Answer, Refusal> {
    let name = req.user.as_str();
    let ok = Ok(Answer::Code(0));
    if let Body::Register = req.body {
        if name.is_empty() {
            return Err(Refusal::Failed);
        }
        if state.users.contains_key(name) {
            return Err(Refusal::NameInUse);
        }
        state.users.insert(name.to_string(), User::default());
        return ok;
    }
    let Some(user) = state.users.get_mut(name) else {
        return Err(Refusal::NoSuchUser);
    };
    match &req.body {
        Body::Register => ok,
        Body::Unregister => {
            state.users.remove(name);
            ok
        }
        Body::Connect { ip, port } => {
            if user.connected.is_some() {
                return Err(Refusal::AlreadyConnected);
            }
            let port = parse_port(port).ok_or(Refusal::Failed)?;
            // No address, or loopback from another host, means the
            // connection's own.
            let ip = match ip.as_str() {
                "" | "0.0.0.0" => from.to_string(),
                s => {
                    let claimed = s.parse::<IpAddr>().map_err(|_| Refusal::Failed)?;
                    crate::net::reachable_ip(claimed, from).to_string()
                }
            };
            user.connected = Some((ip, port));
            ok
        }
        Body::Disconnect => {
            if user.connected.take().is_none() {
                return Err(Refusal::NotConnected);
            }
            ok
        }
        Body::Publish { file, description } => {
            if user.connected.is_none() {
                return Err(Refusal::NotConnected);
            }
            if file.is_empty() {
                return Err(Refusal::Failed);
            }
            if user.files.contains_key(file.as_str()) {
                return Err(Refusal::AlreadyPublished);
            }
            user.files.insert(file.to_string(), description.to_string());
            ok
        }
        Body::Delete { file } => {
            if user.connected.is_none() {
                return Err(Refusal::NotConnected);
            }
            if user.files.remove(file.as_str()).is_none() {
                return Err(Refusal::NotPublished);
            }
            ok
        }
        Body::ListUsers => {
            if user.connected.is_none() {
                return Err(Refusal::NotConnected);
            }
            let users = state
                .users
                .iter()
                .filter_map(|(n, u)| {
                    let (ip, port) = u.connected.as_ref()?;
                    Some(UserEntry {
                        user: stored(n),
                        ip: stored(ip),
                        port: stored(&port.to_string()),
                    })
                })
                .collect();
            Ok(Answer::Users(users))
        }
        Body::ListContent { remote } => {
            if user.connected.is_none() {
                return Err(Refusal::NotConnected);
            }
            let Some(r) = state.users.get(remote.as_str()) else {
                return Err(Refusal::NoSuchRemoteUser);
            };
            let files = r
                .files
                .iter()
                .map(|(f, d)| FileEntry {
                    file: stored(f),
                    description: stored(d),
                })
                .collect();
            Ok(Answer::Content(files))
        }
    }
}

/// A stored string as a field: it came in as one (or is an address or a
/// port number), so it always is one.
fn stored(s: &str) -> Field {
    Field::new(s).unwrap_or_default()
}

/// A port from 1 to 65535 in plain decimal.
fn parse_port(f: &Field) -> Option<u16> {
    let s = f.as_str();
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

fn decode(bytes: &[u8]) -> Result<State> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| Error::Decode("not a nap-server state file".into()))?;
    let (state, rest): (State, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| Error::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    for name in state.users.keys() {
        Field::new(name.as_str()).map_err(|e| Error::Decode(format!("user name: {e}")))?;
    }
    Ok(state)
}

/// The state file's bytes.
fn encode(state: &State) -> Result<Vec<u8>> {
    let mut bytes = MAGIC.to_vec();
    // Only a Serialize impl can fail postcard's encoding into a Vec, and
    // State's are derived: this is for form's sake.
    bytes.extend(postcard::to_stdvec(state).map_err(std::io::Error::other)?);
    Ok(bytes)
}

/// Writes `state` to `file` atomically.
fn write_state(file: &Path, state: &State) -> Result<()> {
    write_bytes(file, &encode(state)?)
}

/// Writes `bytes` to `file` atomically: a synced temporary file renamed over it.
fn write_bytes(file: &Path, bytes: &[u8]) -> Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = TempFile::create_in(dir).doing(|| format!("writing in {}", dir.display()))?;
    tmp.file()
        .write_all(bytes)
        .and_then(|()| tmp.file().sync_data())
        .doing(|| format!("writing {}", file.display()))?;
    tmp.persist(file)
        .doing(|| format!("replacing {}", file.display()))?;
    // The rename itself reaches the disk with the folder.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nap::wire::{DateTime, Op};
    use std::net::Ipv4Addr;

    fn req(user: &str, body: Body) -> Request {
        Request {
            datetime: DateTime::parse("21/11/2026 10:00:00"),
            user: Field::new(user).unwrap(),
            body,
        }
    }
    fn f(s: &str) -> Field {
        Field::new(s).unwrap()
    }
    const FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

    fn code(s: &Store, user: &str, body: Body) -> u8 {
        s.apply(&req(user, body), FROM).code()
    }

    fn connect(ip: &str, port: &str) -> Body {
        Body::Connect {
            ip: f(ip),
            port: f(port),
        }
    }

    #[test]
    fn a_loopback_address_from_another_host_is_the_connections_own() {
        let s = Store::in_memory();
        for (user, ip) in [("ana", "127.0.0.1"), ("bo", "::1"), ("carl", "10.9.9.9")] {
            assert_eq!(code(&s, user, Body::Register), 0);
            assert_eq!(code(&s, user, connect(ip, "4000")), 0);
        }
        let Answer::Users(users) = s.apply(&req("ana", Body::ListUsers), FROM) else {
            panic!("no user list");
        };
        let ips: Vec<&str> = users.iter().map(|u| u.ip.as_str()).collect();
        assert_eq!(ips, ["10.1.2.3", "10.1.2.3", "10.9.9.9"]);
    }

    #[test]
    fn the_result_codes_follow_the_table() {
        let s = Store::in_memory();
        assert_eq!(code(&s, "ana", Body::Register), 0);
        assert_eq!(code(&s, "ana", Body::Register), 1);
        assert_eq!(code(&s, "", Body::Register), 2);
        assert_eq!(code(&s, "zoe", Body::Unregister), 1);
        assert_eq!(code(&s, "zoe", connect("", "5000")), 1);
        let publish = || Body::Publish {
            file: f("a.txt"),
            description: f("the a"),
        };
        assert_eq!(code(&s, "zoe", publish()), 1);
        assert_eq!(code(&s, "ana", publish()), 2);
        assert_eq!(code(&s, "ana", Body::ListUsers), 2);
        assert_eq!(code(&s, "ana", connect("", "0")), 3);
        assert_eq!(code(&s, "ana", connect("", "65536")), 3);
        assert_eq!(code(&s, "ana", connect("", "+80")), 3);
        assert_eq!(code(&s, "ana", connect("not an ip", "80")), 3);
        assert_eq!(code(&s, "ana", connect("0.0.0.0", "65535")), 0);
        assert_eq!(code(&s, "ana", connect("", "5000")), 2);
        assert_eq!(code(&s, "ana", publish()), 0);
        assert_eq!(code(&s, "ana", publish()), 3);
        assert_eq!(code(&s, "ana", Body::Delete { file: f("b") }), 3);
        assert_eq!(
            s.apply(&req("ana", Body::ListUsers), FROM),
            Answer::Users(vec![UserEntry {
                user: f("ana"),
                ip: f("10.1.2.3"),
                port: f("65535")
            }])
        );
        let list = |r: &str| Body::ListContent { remote: f(r) };
        assert_eq!(code(&s, "ana", list("zoe")), 3);
        assert_eq!(
            s.apply(&req("ana", list("ana")), FROM),
            Answer::Content(vec![FileEntry {
                file: f("a.txt"),
                description: f("the a")
            }])
        );
        assert_eq!(code(&s, "ana", Body::Delete { file: f("a.txt") }), 0);
        assert_eq!(code(&s, "ana", Body::Disconnect), 0);
        assert_eq!(code(&s, "ana", Body::Disconnect), 2);
        assert_eq!(code(&s, "zoe", Body::Disconnect), 1);
        assert_eq!(code(&s, "ana", Body::Unregister), 0);
        assert_eq!(s.users(), 0);
        for op in Op::ALL {
            assert!(op.fail_code() >= 2);
        }
    }

    #[test]
    fn state_survives_a_restart_with_everyone_disconnected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        {
            let s = Store::open(&dir).unwrap();
            assert_eq!(code(&s, "ana", Body::Register), 0);
            assert_eq!(code(&s, "ana", connect("127.0.0.1", "9")), 0);
            let p = Body::Publish {
                file: f("x\0y".replace('\0', "\n").as_str()),
                description: f("d"),
            };
            assert_eq!(code(&s, "ana", p), 0);
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(
            code(&s, "ana", Body::Disconnect),
            2,
            "disconnected on restart"
        );
        assert_eq!(code(&s, "ana", connect("127.0.0.1", "9")), 0);
        assert_eq!(
            s.apply(&req("ana", Body::ListContent { remote: f("ana") }), FROM),
            Answer::Content(vec![FileEntry {
                file: f("x\ny"),
                description: f("d")
            }])
        );
        // Nothing but the state file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        fs::write(dir.join(STATE_FILE), b"garbage").unwrap();
        assert!(Store::open(&dir).is_err());
    }

    #[test]
    fn concurrent_changes_are_all_saved() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let s = std::sync::Arc::new(Store::open(&dir).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        assert_eq!(code(&s, &format!("u{t}-{i}"), Body::Register), 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(s);
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.users(), 200);
    }
}

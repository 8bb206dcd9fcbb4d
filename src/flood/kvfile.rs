//! The servent's key-value database and its file format.
//!
//! - A line whose first non-blank character is `#` is a comment.
//! - Blank lines are ignored.
//! - The first word of a line is the key; the rest of the line after the
//!   whitespace that follows it is the value (trailing whitespace and the
//!   line ending dropped). A `#` inside a value is part of the value.
//! - A key given more than once keeps its last value.
//!
//! Keys and values travel as protocol strings, so they must be printable
//! ASCII of at most 400 bytes; a line that breaks that is an error naming it.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::Path;

use super::wire::Text;
use crate::error::{Error, Result, ResultExt};

/// A loaded database: key to value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStore {
    map: HashMap<Text, Text>,
}

/// A line of a key-value file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError {
    /// 1-based line number.
    pub line: usize,
    pub why: String,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for KvError {}

impl KvStore {
    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Parses the text of a key-value file.
    pub fn parse(text: &str) -> std::result::Result<KvStore, KvError> {
        let mut map = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let body = line.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let (key, value) = match body.find(char::is_whitespace) {
                Some(end) => (&body[..end], body[end..].trim_start()),
                None => (body, ""),
            };
            let check = |what: &str, s: &str| {
                Text::new(s).map_err(|e| KvError {
                    line: i + 1,
                    why: format!("{what} is {e}"),
                })
            };
            let key = check("key", key)?;
            let value = check("value", value)?;
            map.insert(key, value);
        }
        Ok(KvStore { map })
    }

    /// Reads and parses a key-value file.
    pub fn load(path: &Path) -> Result<KvStore> {
        let text = fs::read_to_string(path).doing(|| format!("reading {}", path.display()))?;
        KvStore::parse(&text).map_err(|e| Error::local_path(path, e.to_string()))
    }

    /// The value held for `key`.
    pub fn get(&self, key: &Text) -> Option<&Text> {
        self.map.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(kv: &KvStore, key: &str) -> Option<String> {
        kv.get(&Text::new(key).unwrap()).map(|v| v.to_string())
    }

    #[test]
    fn first_word_is_the_key_rest_is_the_value() {
        let kv = KvStore::parse("ssh 22/tcp   Secure   Shell\n").unwrap();
        assert_eq!(get(&kv, "ssh").as_deref(), Some("22/tcp   Secure   Shell"));
        let kv = KvStore::parse("tab\t\t a\tb\n").unwrap();
        assert_eq!(get(&kv, "tab").as_deref(), Some("a\tb"));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let kv = KvStore::parse("# a comment\n\n   \n  # indented comment\nk v\n\t\n").unwrap();
        assert_eq!(kv.map.len(), 1);
        assert_eq!(get(&kv, "k").as_deref(), Some("v"));
        assert_eq!(get(&kv, "#"), None);
    }

    #[test]
    fn hash_inside_a_value_is_kept() {
        let kv = KvStore::parse("http 80/tcp www # WorldWideWeb HTTP\n").unwrap();
        assert_eq!(
            get(&kv, "http").as_deref(),
            Some("80/tcp www # WorldWideWeb HTTP")
        );
    }

    #[test]
    fn last_duplicate_wins() {
        let kv = KvStore::parse("k first\nother x\nk second\n").unwrap();
        assert_eq!(get(&kv, "k").as_deref(), Some("second"));
        assert_eq!(kv.map.len(), 2);
    }

    #[test]
    fn line_endings_and_trailing_space_are_dropped() {
        let kv = KvStore::parse("a one  \r\nb two\r\nc\n").unwrap();
        assert_eq!(get(&kv, "a").as_deref(), Some("one"));
        assert_eq!(get(&kv, "b").as_deref(), Some("two"));
        // A key alone has an empty value.
        assert_eq!(get(&kv, "c").as_deref(), Some(""));
    }

    #[test]
    fn unsendable_lines_are_errors_with_their_number() {
        let long = format!("ok v\nk {}\n", "x".repeat(401));
        let err = KvStore::parse(&long).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.why.contains("value"), "{err}");
        let err = KvStore::parse("# c\n\ncaf\u{e9} x\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.why.contains("key"), "{err}");
        assert!(KvStore::parse(&format!("k {}\n", "x".repeat(400))).is_ok());
    }
}

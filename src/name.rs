//! `FileName`: a validated plain file name, the only form in which a name from
//! the network or the command line reaches the file system.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest name accepted, in bytes (the usual `NAME_MAX`).
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Prefix of the temporary files receivers write before renaming; such names
/// are never valid `FileName`s, so listings skip them and nobody can claim one.
pub(crate) const TEMP_PREFIX: &str = ".peerkit-tmp-";

/// Why a string is not a plain file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(usize),
    Separator,
    Nul,
    Dots,
    Reserved,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("invalid file name: empty"),
            NameError::TooLong(n) => {
                write!(
                    f,
                    "invalid file name: {n} bytes, at most {MAX_NAME_LEN} allowed"
                )
            }
            NameError::Separator => f.write_str("invalid file name: contains a path separator"),
            NameError::Nul => f.write_str("invalid file name: contains a NUL byte"),
            NameError::Dots => f.write_str("invalid file name: '.' and '..' are not file names"),
            NameError::Reserved => f.write_str("invalid file name: reserved temporary-file prefix"),
        }
    }
}

impl std::error::Error for NameError {}

/// A plain file name: non-empty, at most 255 bytes, no `/` or `\`, no NUL,
/// not `.` or `..`, and not one of our temporary names. Deserializing checks
/// all of this, so a decoded message can only ever hold a valid name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

impl FileName {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<FileName, NameError> {
        let s = s.into();
        validate(&s)?;
        Ok(FileName(s))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `dir/name`; safe because the name has no separator and is not `..`.
    pub fn within(&self, dir: &Path) -> PathBuf {
        dir.join(&self.0)
    }

    /// The final component of a local path, validated.
    pub fn from_path(path: &Path) -> Result<FileName, NameError> {
        let name = path.file_name().ok_or(NameError::Dots)?;
        FileName::new(name.to_string_lossy().into_owned())
    }
}

fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(s.len()));
    }
    if s.contains('\0') {
        return Err(NameError::Nul);
    }
    if s.contains('/') || s.contains('\\') {
        return Err(NameError::Separator);
    }
    if s == "." || s == ".." {
        return Err(NameError::Dots);
    }
    if s.starts_with(TEMP_PREFIX) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

impl TryFrom<String> for FileName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        FileName::new(s)
    }
}

impl std::str::FromStr for FileName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        FileName::new(s)
    }
}

impl From<FileName> for String {
    fn from(n: FileName) -> String {
        n.0
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Any valid file name, for property tests.
#[cfg(test)]
pub(crate) fn arb_name() -> impl proptest::strategy::Strategy<Value = FileName> {
    use proptest::strategy::Strategy;
    proptest::string::string_regex("[^/\u{0}]{1,40}|[a-z0-9 ._-]{200,255}")
        .expect("a valid regex")
        .prop_filter_map("a valid name", |s| FileName::new(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in [
            "a",
            "texto01.txt",
            "with space.png",
            "..hidden",
            "a..b",
            &"x".repeat(255),
        ] {
            assert_eq!(FileName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_hostile_names() {
        assert_eq!(FileName::new(""), Err(NameError::Empty));
        assert_eq!(FileName::new("../x"), Err(NameError::Separator));
        assert_eq!(FileName::new("/etc/passwd"), Err(NameError::Separator));
        assert_eq!(FileName::new("a/b"), Err(NameError::Separator));
        assert_eq!(FileName::new("a\\b"), Err(NameError::Separator));
        assert_eq!(FileName::new("a\0b"), Err(NameError::Nul));
        assert_eq!(FileName::new(".."), Err(NameError::Dots));
        assert_eq!(FileName::new("."), Err(NameError::Dots));
        assert_eq!(FileName::new("x".repeat(300)), Err(NameError::TooLong(300)));
        assert_eq!(
            FileName::new(format!("{TEMP_PREFIX}1")),
            Err(NameError::Reserved)
        );
    }

    #[test]
    fn decoding_validates() {
        let bytes = postcard::to_stdvec(&"../x").unwrap();
        assert!(postcard::from_bytes::<FileName>(&bytes).is_err());
        let bytes = postcard::to_stdvec(&"ok.txt").unwrap();
        assert_eq!(
            postcard::from_bytes::<FileName>(&bytes).unwrap().as_str(),
            "ok.txt"
        );
    }
}

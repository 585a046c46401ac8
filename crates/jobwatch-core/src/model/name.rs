//! Job names: the only user input that becomes part of a path, so it is
//! validated strictly before anything touches the filesystem.

use std::fmt;
use std::str::FromStr;

/// Longest accepted name, in bytes (ASCII only, so also in characters).
pub const MAX_NAME_LEN: usize = 64;

/// A validated job name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
///
/// The first character is never `.` or `-`, so a name can never be `..`,
/// a hidden file, or mistaken for an option; `/` is never accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobName(String);

/// Why a string is not a valid job name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string was empty.
    #[error("invalid job name: it is empty (use [A-Za-z0-9][A-Za-z0-9._-]{{0,63}})")]
    Empty,
    /// The string was longer than [`MAX_NAME_LEN`].
    #[error("invalid job name {0:?}: longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    /// The first character was not an ASCII letter or digit.
    #[error("invalid job name {0:?}: it must start with a letter or digit")]
    BadStart(String),
    /// A character outside `[A-Za-z0-9._-]` appeared.
    #[error("invalid job name {name:?}: character {bad:?} is not allowed (use A-Z a-z 0-9 . _ -)")]
    BadChar {
        /// The rejected name.
        name: String,
        /// The first offending character.
        bad: char,
    },
}

impl JobName {
    /// Validates `s` as a job name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let Some(first) = s.chars().next() else {
            return Err(NameError::Empty);
        };
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.to_owned()));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(NameError::BadStart(s.to_owned()));
        }
        if let Some(bad) = s.chars().find(|c| !is_name_char(*c)) {
            return Err(NameError::BadChar {
                name: s.to_owned(),
                bad,
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl FromStr for JobName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A name travels as its string (a run spec handed to a wrapper), and is
/// validated again on the way in: a name read from anywhere is a valid one.
impl serde::Serialize for JobName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for JobName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        JobName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "build", "A-1", "x.y_z-0", "9", &"a".repeat(64)] {
            assert!(JobName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_paths_hidden_names_and_odd_characters() {
        for bad in [
            "", ".", "..", "../x", "a/b", ".hidden", "-x", "_x", "a b", "é", "a\n", "a:b",
        ] {
            assert!(JobName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            JobName::parse(&"a".repeat(65)),
            Err(NameError::TooLong(_))
        ));
    }
}

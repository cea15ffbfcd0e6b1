//! Key paths such as `serial[1].lanes[0].lane`, used to name a value in
//! problems and to find where it is written in the file.

use std::fmt;

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An index into an array (0-based, as in `serial[0]` for the first `[[serial]]`).
    Index(usize),
}

/// The path of a value inside the configuration document.
///
/// Displayed with dots between keys and 0-based indexes in brackets:
/// `serial[1].baud` is the `baud` key of the second `[[serial]]` table. Keys
/// that are not bare TOML keys are quoted: `camera[0].lanes."Line 1"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document root (displays as the empty string).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path followed by a key.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path followed by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path without its last step (`None` for the root).
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    /// True for the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn from_segments(segments: Vec<Segment>) -> Self {
        Self(segments)
    }

    pub(crate) fn segments_mut(&mut self) -> &mut Vec<Segment> {
        &mut self.0
    }
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(key) {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_toml() {
        let p = KeyPath::root().key("serial").index(1).key("baud");
        assert_eq!(p.to_string(), "serial[1].baud");
        let p = KeyPath::root()
            .key("camera")
            .index(0)
            .key("lanes")
            .key("Line 1");
        assert_eq!(p.to_string(), "camera[0].lanes.\"Line 1\"");
        assert_eq!(KeyPath::root().to_string(), "");
        assert_eq!(p.parent().unwrap().to_string(), "camera[0].lanes");
    }
}

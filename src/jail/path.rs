//! Lexical client paths: what a [`JailPath`] is (absolute, no `.`, `..` or
//! empty components, no NUL, bounded lengths) and how names join it.

use std::fmt;

use super::error::{invalid, JailError};

/// Longest single name component Linux filesystems accept (NAME_MAX).
const NAME_MAX: usize = 255;
/// Longest client path accepted (PATH_MAX): a longer one could not be
/// opened by the kernel anyway, and would only cost memory in logs,
/// journal rows and rejection reports.
pub(super) const PATH_MAX: usize = 4096;

/// A normalised path inside the jail: starts with '/', and has no '.', '..'
/// or empty components. Displays as "/a/b".
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JailPath(String);

impl JailPath {
    /// Lexically normalises a client path. Relative paths are taken from "/",
    /// and ".." stops at "/" so it can never name anything above the root.
    pub fn parse(client_path: &str) -> Result<JailPath, JailError> {
        if client_path.contains('\0') {
            return Err(invalid("path contains a NUL byte"));
        }
        if client_path.len() > PATH_MAX {
            return Err(invalid("path longer than 4096 bytes"));
        }
        let mut parts: Vec<&str> = Vec::new();
        for comp in client_path.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => {
                    check_len(name)?;
                    parts.push(name);
                }
            }
        }
        Ok(JailPath(format!("/{}", parts.join("/"))))
    }

    /// The jail root, "/".
    pub fn root() -> JailPath {
        JailPath("/".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The containing directory, or `None` for the root.
    pub fn parent(&self) -> Option<JailPath> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').unwrap_or(0);
        Some(JailPath(self.0[..cut.max(1)].to_string()))
    }

    /// Appends one component; `name` must be a single valid name, not a path.
    pub fn join(&self, name: &str) -> Result<JailPath, JailError> {
        check_component(name)?;
        let sep = if self.is_root() { "" } else { "/" };
        Ok(JailPath(format!("{}{}{}", self.0, sep, name)))
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Component-wise prefix test: "/ab" does not start with "/a".
    pub fn starts_with(&self, dir: &JailPath) -> bool {
        if dir.is_root() || self == dir {
            return true;
        }
        self.0
            .strip_prefix(dir.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The path relative to the root fd, as openat2 wants it ("." for root).
    pub(super) fn relative(&self) -> &str {
        if self.is_root() {
            "."
        } else {
            &self.0[1..]
        }
    }

    /// Splits into (parent, name); the root has neither.
    pub(super) fn split_last(&self) -> Option<(JailPath, &str)> {
        Some((self.parent()?, self.file_name()?))
    }
}

impl fmt::Display for JailPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_len(name: &str) -> Result<(), JailError> {
    if name.len() > NAME_MAX {
        return Err(invalid("component longer than 255 bytes"));
    }
    Ok(())
}

fn check_component(name: &str) -> Result<(), JailError> {
    match name {
        "" => Err(invalid("empty name")),
        "." | ".." => Err(invalid("'.' and '..' are not names")),
        _ if name.contains('/') => Err(invalid("name contains '/'")),
        _ if name.contains('\0') => Err(invalid("name contains a NUL byte")),
        _ => check_len(name),
    }
}

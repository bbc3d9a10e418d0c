//! Credentials of an account: the password hash (argon2id within cost
//! bounds) and OpenSSH public keys, inline or from a key file.

use super::super::resolve;
use super::validate::Validator;
use russh::keys::ssh_key::AuthorizedKeys;
use russh::keys::PublicKey;
use std::path::{Path, PathBuf};

/// The costliest argon2 parameters a `password_hash` may ask for: each
/// guess costs the server this much memory and time, so an account file
/// must not be able to make one guess take gigabytes or seconds.
pub(crate) const ARGON2_MAX_M_KIB: u32 = 256 * 1024;
pub(crate) const ARGON2_MAX_T: u32 = 10;
pub(crate) const ARGON2_MAX_P: u32 = 8;

/// Whether a parsed argon2 hash stays within the bounds above; the error
/// says which parameter is over and what to do.
pub(crate) fn argon2_cost_allowed(h: &argon2::PasswordHash<'_>) -> Result<(), String> {
    let p = argon2::Params::try_from(h).map_err(|e| {
        format!("argon2 parameters unreadable ({e}); make one with `depot hash-password`")
    })?;
    for (name, value, max) in [
        ("m (memory, KiB)", p.m_cost(), ARGON2_MAX_M_KIB),
        ("t (iterations)", p.t_cost(), ARGON2_MAX_T),
        ("p (lanes)", p.p_cost(), ARGON2_MAX_P),
    ] {
        if value > max {
            return Err(format!(
                "argon2 parameter {name} = {value} is over the maximum {max}; make a new hash with `depot hash-password`"
            ));
        }
    }
    Ok(())
}

impl Validator<'_> {
    pub(super) fn password_hash(&mut self, h: String) -> Option<String> {
        match argon2::PasswordHash::new(&h) {
            Ok(p) if p.algorithm.as_str() == "argon2id" => match argon2_cost_allowed(&p) {
                Ok(()) => Some(h),
                Err(why) => {
                    self.err("password_hash", why);
                    None
                }
            },
            Ok(p) => {
                self.err(
                    "password_hash",
                    format!(
                        "algorithm '{}' is not argon2id; make one with `depot hash-password`",
                        p.algorithm
                    ),
                );
                None
            }
            Err(_) => {
                self.err(
                    "password_hash",
                    "not an argon2id PHC string ($argon2id$v=19$...); make one with `depot hash-password`",
                );
                None
            }
        }
    }

    pub(super) fn authorized_keys(&mut self, key: &str, text: &str) -> Vec<PublicKey> {
        let mut out = Vec::new();
        for entry in AuthorizedKeys::new(text) {
            match entry {
                Ok(e) => out.push(e.public_key().clone()),
                Err(e) => self.err(key, format!("not an OpenSSH public key line ({e})")),
            }
        }
        out
    }

    /// A key file. A missing `<account>_ed25519.pub` is not an error but a
    /// key pair to generate when the account is first served: it comes
    /// back as pending, and validation itself writes nothing.
    pub(super) fn authorized_keys_file(
        &mut self,
        account: &str,
        f: &Path,
    ) -> (Vec<PublicKey>, Option<PathBuf>) {
        let path = resolve(self.base, f);
        self.referenced.push(path.clone());
        let generable = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == format!("{account}_ed25519.pub"));
        if !path.exists() && generable {
            return (Vec::new(), Some(path));
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => (self.authorized_keys("authorized_keys_file", &text), None),
            Err(e) => {
                self.err(
                    "authorized_keys_file",
                    format!("cannot read {} ({e})", path.display()),
                );
                (Vec::new(), None)
            }
        }
    }
}

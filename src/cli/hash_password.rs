//! `depot hash-password`: a password on stdin (not echoed on a terminal) →
//! its argon2id PHC string on stdout, for an account's `password_hash`.

use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal};

pub fn run() -> Result<()> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        bail!("empty password: type one (or pipe it on stdin)");
    }
    println!("{}", crate::sftp::auth::hash_password(&password)?);
    Ok(())
}
